package e2e

import (
	"io"
	"net/http"
	"testing"
)

// Metrics returns what http://addr/metrics shows now, in Prometheus's text format: a scrape of
// a process's --metrics-listen address. It keeps no connection open after it.
func Metrics(t testing.TB, addr string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
