package demosites_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/concur-dev/concur/internal/demosites"
	"github.com/concur-dev/concur/internal/testkit"
)

// Every page has its site's size, cnbc is listed twice with the same page, an unknown path is
// 404, and nothing outlives Close.
func TestSites(t *testing.T) {
	testkit.NoLeaks(t)
	s, err := demosites.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	get := func(url string) (int, int64) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, n
	}
	urls := s.URLs()
	if len(urls) != 14 || urls[12] != urls[13] {
		t.Fatalf("URLs = %q; want the talk's 14, the last two the same", urls)
	}
	for i, url := range urls {
		if code, n := get(url); code != http.StatusOK || n != int64(demosites.Sites[i].Size) {
			t.Errorf("GET %s: %d, %d bytes; want 200, %d bytes", url, code, n, demosites.Sites[i].Size)
		}
	}
	if code, _ := get("http://" + s.Addr().String() + "/www.example.com/"); code != http.StatusNotFound {
		t.Errorf("an unknown site: %d, want 404", code)
	}
	if n, err := demosites.Fetch(t.Context(), client, urls[1]); err != nil || n != int64(demosites.Sites[1].Size) {
		t.Errorf("Fetch %s = %d, %v; want %d bytes", urls[1], n, err, demosites.Sites[1].Size)
	}
	if _, err := demosites.Fetch(t.Context(), client, "http://"+s.Addr().String()+"/\x7f"); err == nil {
		t.Errorf("Fetch of a URL that does not parse: no error")
	}
}
