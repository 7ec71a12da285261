package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// redisInstall says how to get the Redis yardstick.
const redisInstall = "install Debian's redis-server and redis-tools (apt-get install redis-server redis-tools) to measure the Redis yardstick"

// redisServer is a redis-server the bench started on a free loopback port.
type redisServer struct {
	port string
	cmd  *exec.Cmd
	done chan error
}

// Redis's two ways to keep its data, as the bench compares them: nothing on disk, or an
// append-only file synced before each write is answered (the promise the durable counter
// makes).
var (
	redisVolatile = []string{"--save", "", "--appendonly", "no"}
	redisFsync    = []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}
)

// startRedis starts redis-server with persistence (redisVolatile or redisFsync) and, when it
// keeps a file, dir as its folder.
func startRedis(ctx context.Context, persistence []string, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found: %s", redisInstall)
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		return nil, fmt.Errorf("redis-benchmark not found: %s", redisInstall)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{port: port, done: make(chan error, 1)}
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--daemonize", "no", "--loglevel", "warning", "--dir", dir}, persistence...)
	r.cmd = exec.CommandContext(ctx, bin, args...)
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := r.ping(); err == nil {
			return r, nil
		} else if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("redis-server on port %s did not answer PING: %w", port, err)
		}
	}
}

func (r *redisServer) ping() error {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+r.port, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func (r *redisServer) stop() {
	r.cmd.Process.Kill()
	<-r.done
}

// incr runs redis-benchmark's INCR test with args added and returns its requests per second.
func (r *redisServer) incr(ctx context.Context, requests int, args ...string) (float64, error) {
	args = append([]string{"-h", "127.0.0.1", "-p", r.port, "-t", "incr", "-n", strconv.Itoa(requests), "--csv"}, args...)
	out, err := exec.CommandContext(ctx, "redis-benchmark", args...).Output()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark %s: %w", strings.Join(args, " "), err)
	}
	return parseRedisCSV(string(out), "INCR")
}

// parseRedisCSV reads the requests per second of test from redis-benchmark --csv output: a
// header row naming the columns, then a row per test.
func parseRedisCSV(out, test string) (float64, error) {
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark output: %w", err)
	}
	if len(rows) == 0 {
		return 0, errors.New("redis-benchmark printed nothing")
	}
	col := -1
	for i, name := range rows[0] {
		if name == "rps" {
			col = i
		}
	}
	for _, row := range rows[1:] {
		if len(row) > col && col >= 0 && row[0] == test {
			return strconv.ParseFloat(row[col], 64)
		}
	}
	return 0, fmt.Errorf("no rps for %s in redis-benchmark output:\n%s", test, out)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}
