package sitesize_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/services/sitesize"
)

// gateURLs returns the URLs of gates named by names.
func (s *site) gateURLs(names ...string) []string {
	urls := make([]string, len(names))
	for i, n := range names {
		urls[i] = s.url("/gate/" + n)
	}
	return urls
}

// waitArrivals waits until n requests reached the site and returns their paths.
func (s *site) waitArrivals(t *testing.T, n int) []string {
	t.Helper()
	var paths []string
	for range n {
		paths = append(paths, receive(t, s.arrived, "a request to arrive").path)
	}
	return paths
}

// Like imap_unordered, results come back in the order the fetches finish, each carrying
// its index and URL. The test decides the order by opening the gates one at a time.
func TestResultsComeAsCompleted(t *testing.T) {
	for range 5 {
		web := newSite(t)
		s := start(t, config())
		stream, err := s.client.Measure(t.Context(), &sitesizev1.MeasureRequest{Urls: web.gateURLs("a", "b", "c"), Concurrency: 3})
		if err != nil {
			t.Fatal(err)
		}
		web.waitArrivals(t, 3)
		for _, name := range []string{"c", "a", "b"} {
			web.open(name)
			r, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			want := uint32(strings.Index("abc", name))
			if r.GetIndex() != want || r.GetUrl() != web.url("/gate/"+name) || r.GetSize() != 1 {
				t.Fatalf("after opening gate %s, got result %d (%s, size %d); want %d", name, r.GetIndex(), r.GetUrl(), r.GetSize(), want)
			}
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last result: %v; want the end of the stream", err)
		}
	}
}

// Like imap, ordered results come in request order, whatever order the fetches finish in.
func TestOrderedResultsComeInRequestOrder(t *testing.T) {
	for range 5 {
		web := newSite(t)
		s := start(t, config())
		stream, err := s.client.Measure(t.Context(), &sitesizev1.MeasureRequest{Urls: web.gateURLs("a", "b", "c", "d"), Concurrency: 4, Ordered: true})
		if err != nil {
			t.Fatal(err)
		}
		web.waitArrivals(t, 4)
		// d, c and b finish first, each confirmed done by the server before the next opens.
		for i, name := range []string{"d", "c", "b"} {
			web.open(name)
			eventually(t, "the fetch of "+name+" to finish", func() bool {
				return s.counter(t, "concur_sitesize_fetches_total", "ok") == float64(i+1)
			})
		}
		web.open("a")
		for want := range uint32(4) {
			r, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.GetIndex() != want || r.GetUrl() != web.gateURLs("a", "b", "c", "d")[want] {
				t.Fatalf("ordered result %d is index %d (%s)", want, r.GetIndex(), r.GetUrl())
			}
		}
	}
}

// The same URL twice in a batch is fetched once and reported at each of its indexes, in
// either mode.
func TestDuplicatesAreFetchedOnce(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			web := newSite(t)
			s := start(t, config())
			a, b := web.url("/size/100"), web.url("/size/5")
			got := s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{a, b, a, a, b}, Ordered: ordered})
			for i, want := range []int64{100, 5, 100, 100, 5} {
				if got[i].GetSize() != want {
					t.Errorf("ordered %v: index %d has size %d; want %d", ordered, i, got[i].GetSize(), want)
				}
			}
			if n, m := web.hitsOf("/size/100"), web.hitsOf("/size/5"); n != 1 || m != 1 {
				t.Errorf("ordered %v: the site was asked %d and %d times; want once each", ordered, n, m)
			}
		})
	}
}

// Cancelling the call stops every fetch of its batch: the site sees each request end.
func TestCancelStopsFetches(t *testing.T) {
	web := newSite(t)
	s := start(t, config())
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := s.client.Measure(ctx, &sitesizev1.MeasureRequest{Urls: web.gateURLs("x", "y", "z"), Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	web.waitArrivals(t, 3)
	cancel()
	var gone []string
	for range 3 {
		gone = append(gone, receive(t, web.gone, "a cancelled fetch to end"))
	}
	slices.Sort(gone)
	if !slices.Equal(gone, []string{"x", "y", "z"}) {
		t.Fatalf("ended requests: %v", gone)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Recv after cancel: %v", err)
	}
	eventually(t, "the pool to be idle", func() bool {
		return s.counter(t, "concur_sitesize_fetches_in_flight") == 0 && s.counter(t, "concur_sitesize_batches") == 0
	})
}

// The workers and a batch's concurrency bound how many fetches run: the k-th request to reach
// the site can only come after enough earlier ones finished.
func TestConcurrencyIsBounded(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		workers, concurrency int
		limit                int64
	}{
		{"by the batch's concurrency", 10, 2, 2},
		{"by the server's workers", 2, 5, 2},
		{"by --sitesize-max-concurrency", 10, 100, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			web := newSite(t)
			c := config()
			c.Workers = tt.workers
			c.MaxConcurrency = 3
			s := start(t, c)
			names := []string{"0", "1", "2", "3", "4", "5"}
			done := make(chan error, 1)
			go func() {
				_, err := s.measure(t, &sitesizev1.MeasureRequest{Urls: web.gateURLs(names...), Concurrency: uint32(tt.concurrency)})
				done <- err
			}()
			for k := range int64(len(names)) {
				a := receive(t, web.arrived, "the next request")
				if a.opened < k-tt.limit+1 {
					t.Errorf("request %d (%s) arrived when %d gates were open: more than %d fetches ran at once", k, a.path, a.opened, tt.limit)
				}
				web.open(strings.TrimPrefix(a.path, "/gate/"))
			}
			if err := receive(t, done, "the batch"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Concurrent batches share the workers fairly: a small batch that arrives while a large
// one holds every worker gets the next free worker, not a place behind the large one.
func TestBatchesShareWorkersFairly(t *testing.T) {
	web := newSite(t)
	c := config()
	c.Workers = 2
	s := start(t, c)
	done := make(chan error, 2)
	run := func(names ...string) {
		go func() {
			_, err := s.measure(t, &sitesizev1.MeasureRequest{Urls: web.gateURLs(names...), Concurrency: 10})
			done <- err
		}()
	}
	run("a0", "a1", "a2", "a3", "a4", "a5")
	if got := web.waitArrivals(t, 2); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"/gate/a0", "/gate/a1"}) {
		t.Fatalf("first arrivals %v", got)
	}
	run("b0", "b1")
	eventually(t, "the second batch to join", func() bool { return s.counter(t, "concur_sitesize_batches") == 2 })

	web.open("a0") // a worker frees up: batch b, running none, gets it
	if got := web.waitArrivals(t, 1)[0]; got != "/gate/b0" {
		t.Fatalf("after a0 finished, %s started; want /gate/b0, the waiting batch's first", got)
	}
	web.open("a1") // a has none running now, b one: a gets it
	if got := web.waitArrivals(t, 1)[0]; got != "/gate/a2" {
		t.Fatalf("after a1 finished, %s started; want /gate/a2", got)
	}
	for _, name := range []string{"b0", "a2", "b1", "a3", "a4", "a5"} {
		web.open(name)
	}
	for range 2 {
		if err := receive(t, done, "a batch to end"); err != nil {
			t.Fatal(err)
		}
	}
}

// On shutdown, in-flight fetches stop at once, what finished is sent (in ordered mode still in
// increasing index order), and the stream ends with UNAVAILABLE saying why.
func TestShutdownSendsWhatFinished(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		web := newSite(t)
		s := start(t, config())
		urls := []string{web.url("/gate/slow"), web.url("/size/7")}
		stream, err := s.client.Measure(t.Context(), &sitesizev1.MeasureRequest{Urls: urls, Concurrency: 2, Ordered: ordered})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the small page to be fetched", func() bool { return s.counter(t, "concur_sitesize_fetches_total", "ok") == 1 })
		web.waitArrivals(t, 2)
		stopped := make(chan error, 1)
		go func() { stopped <- s.stop() }()
		if gone := receive(t, web.gone, "the slow fetch to end"); gone != "slow" {
			t.Fatalf("ended: %s", gone)
		}
		r, err := stream.Recv()
		if err != nil || r.GetIndex() != 1 || r.GetSize() != 7 {
			t.Fatalf("ordered %v: first Recv = %v, %v; want the finished result for index 1", ordered, r, err)
		}
		_, err = stream.Recv()
		if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
			t.Fatalf("ordered %v: stream ended with %v; want UNAVAILABLE saying the server is shutting down", ordered, err)
		}
		if err := receive(t, stopped, "the server to stop"); err != nil {
			t.Fatalf("Serve: %v", err)
		}
	}
}

// Once the service has shut down, a new batch is refused with UNAVAILABLE.
func TestRefusedAfterShutdown(t *testing.T) {
	web := newSite(t)
	s := start(t, config())
	if err := s.svc.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := s.measure(t, &sitesizev1.MeasureRequest{Urls: []string{web.url("/size/1")}})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
		t.Fatalf("Measure after Shutdown: %v", err)
	}
	if n := web.hitsOf("/size/1"); n != 0 {
		t.Fatalf("the site was asked %d times", n)
	}
}

// Shutdown may be called more than once: after the server's, or twice on a service that never
// served, with every Deps left zero.
func TestShutdownTwice(t *testing.T) {
	web := newSite(t)
	s := start(t, config())
	s.measureOK(t, &sitesizev1.MeasureRequest{Urls: []string{web.url("/size/1")}})
	if err := s.stop(); err != nil {
		t.Fatalf("the server's shutdown: %v", err)
	}
	if err := s.svc.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown after the server's: %v", err)
	}
	svc, err := sitesize.New(config(), sitesize.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := svc.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown #%d: %v", i+1, err)
		}
	}
}
