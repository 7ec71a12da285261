package e2e

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// Page is a page ServePages serves, for sitesize to measure.
type Page struct {
	Status int
	Body   []byte
}

// Pages are the pages ServePages serves, by path: a small one, a large one and a missing one.
var Pages = map[string]Page{
	"/small":   {http.StatusOK, bytes.Repeat([]byte("a"), 1234)},
	"/large":   {http.StatusOK, bytes.Repeat([]byte("0123456789"), 100_000)},
	"/missing": {http.StatusNotFound, []byte("no such page\n")},
}

// ServePages serves Pages on loopback until the test ends and returns the server's address:
// the sites of the interop tests' clients.
func ServePages(t testing.TB) *url.URL {
	t.Helper()
	mux := http.NewServeMux()
	for path, pg := range Pages {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(pg.Status)
			w.Write(pg.Body)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
