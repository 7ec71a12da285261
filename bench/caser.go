package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/internal/jitter"
	"github.com/concur-dev/concur/services/caser"
)

// The idle-session scenario opens its sessions from a child process, this program run again
// with these variables set, so that the heap and goroutines it counts are the server's alone.
const (
	idleAddrEnv     = "CONCUR_BENCH_CASER_ADDR"
	idleSessionsEnv = "CONCUR_BENCH_CASER_SESSIONS"
)

func init() {
	if addr := os.Getenv(idleAddrEnv); addr != "" {
		n, _ := strconv.Atoi(os.Getenv(idleSessionsEnv))
		if err := holdIdleSessions(addr, n); err != nil {
			fmt.Fprintln(os.Stderr, "bench: caser idle sessions:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}

	register("caser round trips", "lines answered on 1 and on 1,000 sessions, against the no-op unary ceiling at as many callers", func(ctx context.Context, e *env) ([]figure, error) {
		_, conn, err := e.server(newCaser(0))
		if err != nil {
			return nil, err
		}
		var figs []figure
		for _, n := range []int{1, 1000} {
			fs, err := roundTrips(ctx, e, caserv1.NewCaserServiceClient(conn), n)
			if err != nil {
				return nil, err
			}
			figs = append(figs, fs...)
		}
		return figs, nil
	})

	// The idle sessions are opened once, not in rounds: opening 10,000 sessions is the expensive
	// part, and what they cost in bytes does not move with the machine's load.
	register("caser idle sessions", "what 10,000 idle sessions cost the server: heap, goroutine stacks, goroutines", func(ctx context.Context, e *env) ([]figure, error) {
		const sessions = 10000
		srv, _, err := e.server(newCaser(caserDefaults().Announce))
		if err != nil {
			return nil, err
		}
		heap, stack, goroutines, err := serverCostOf(ctx, srv.Addr().String(), sessions)
		if err != nil {
			return nil, err
		}
		return []figure{
			{name: "server heap per idle session (10,000 sessions)", value: spreadOf([]float64{heap / 1024}), show: fixed(1), unit: "KB", target: "< 32 KB", met: new(heap < 32<<10)},
			{name: "server goroutine stacks per idle session", value: spreadOf([]float64{stack / 1024}), show: fixed(1), unit: "KB"},
			{name: "server goroutines per idle session", value: spreadOf([]float64{goroutines}), show: fixed(2)},
		}, nil
	})
}

func caserDefaults() caser.Config {
	var c caser.Config
	c.RegisterFlags(flag.NewFlagSet("bench", flag.ContinueOnError))
	return c
}

// newCaser is the caser with concurd's defaults and announcements every announce (0 is off).
func newCaser(announce time.Duration) *caser.Service {
	c := caserDefaults()
	c.Announce = announce
	svc, err := caser.New(c, caser.Deps{Jitter: jitter.New(0)})
	if err != nil {
		panic(err) // the defaults are valid
	}
	return svc
}

// roundTrips opens n sessions once, then measures lines sent and answered back to back on
// them, each caller taking whichever session is free, next to the no-op unary ceiling at n
// callers, round by round. It returns the rate with its ratio, its latencies, and the ceiling.
func roundTrips(ctx context.Context, e *env, client caserv1.CaserServiceClient, n int) ([]figure, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the sessions
	free := make(chan caserv1.CaserService_SessionClient, n)
	for range n {
		stream, err := client.Session(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := stream.Recv(); err != nil {
			return nil, fmt.Errorf("welcome: %w", err)
		}
		free <- stream
	}
	line := &caserv1.SessionRequest{Line: "they're bill's friends from the UK"}
	var lat latencies
	lines, ceiling, ratio, err := versus(e.rounds, func() (float64, error) {
		r, err := closedLoop(ctx, n, e.duration, func(context.Context) error {
			stream := <-free
			defer func() { free <- stream }()
			if err := stream.Send(line); err != nil {
				return err
			}
			resp, err := stream.Recv()
			if err == nil && resp.GetCased() == nil {
				err = fmt.Errorf("%v answers a line", resp)
			}
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("load of round trips, %d sessions: %w", n, err)
		}
		return lat.rate(r, nil)
	}, func() (float64, error) { return perSecond(e.ceiling(ctx, n)) })
	if err != nil {
		return nil, err
	}
	sessions, callers := thousands(int64(n))+" sessions", thousands(int64(n))+" callers"
	if n == 1 {
		sessions, callers = "1 session", "1 caller"
	}
	f := rateOf("round trips, "+sessions, lines, "lines")
	f.ratio, f.per = &ratio, " x no-op unary"
	return append(append([]figure{f}, lat.figures("round trips, "+sessions)...),
		rateOf("no-op unary, "+callers+" (the yardstick)", ceiling, "calls")), nil
}

// serverCostOf opens sessions on the server at addr from a child process and returns what
// each costs this process, the server's: heap (live, after a collection), goroutine stacks,
// and goroutines.
func serverCostOf(ctx context.Context, addr string, sessions int) (heap, stack, goroutines float64, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, 0, err
	}
	heap0, stack0, g0 := memory()
	child := exec.CommandContext(ctx, self)
	child.Env = append(os.Environ(), idleAddrEnv+"="+addr, idleSessionsEnv+"="+strconv.Itoa(sessions))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return 0, 0, 0, err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return 0, 0, 0, err
	}
	if err := child.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		stdin.Close() // the child closes its sessions and exits
		err = errors.Join(err, child.Wait())
	}()
	if ready, err := bufio.NewReader(stdout).ReadString('\n'); ready != "ready\n" {
		return 0, 0, 0, fmt.Errorf("the client process did not open its sessions: %q, %v", ready, err)
	}
	heap1, stack1, g1 := memory()
	n := float64(sessions)
	return float64(heap1-heap0) / n, float64(stack1-stack0) / n, float64(g1-g0) / n, nil
}

// memory returns the live heap after a collection, the goroutine stacks, and the goroutines.
func memory() (heap, stack uint64, goroutines int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse, runtime.NumGoroutine()
}

// holdIdleSessions is the child process: it opens n sessions on addr, 1,000 to a connection,
// waits for each welcome, says "ready", and holds them open until its input ends.
func holdIdleSessions(addr string, n int) error {
	const perConn = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n/perConn+1)
	for first := 0; first < n; first += perConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		client := caserv1.NewCaserServiceClient(conn)
		wg.Go(func() {
			for range min(perConn, n-first) {
				stream, err := client.Session(context.Background())
				if err == nil {
					_, err = stream.Recv()
				}
				if err != nil {
					errs <- fmt.Errorf("open a session: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Println("ready")
	_, err := bufio.NewReader(os.Stdin).ReadString('\n') // returns at the end of the input
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
