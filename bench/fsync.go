package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

func init() {
	register("fsync", "what one write and sync of a commit's size costs this machine, in wall and CPU time", fsyncCost)
}

const (
	fsyncs      = 2000
	commitBytes = 512 // about a commit of a few increments with their print jobs
)

// fsyncCost measures the floor under every durable commit: appending a commit's bytes to a
// preallocated file, as pebble does to a recycled write-ahead log, and syncing it. Its CPU
// time is the process's, kernel included: on a virtual machine it is most of the
// cost of a sync, and it is taken from the gRPC handlers that share the cores.
func fsyncCost(ctx context.Context, e *env) ([]figure, error) {
	dir, err := os.MkdirTemp("", "concur-bench-fsync-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var wall, cpu []float64
	for range e.rounds {
		w, c, err := syncs(dir)
		if err != nil {
			return nil, err
		}
		wall, cpu = append(wall, float64(w.Nanoseconds())), append(cpu, float64(c.Nanoseconds()))
	}
	return []figure{
		{name: "write and sync, wall time", value: spreadOf(wall), show: duration},
		{name: "write and sync, CPU time", value: spreadOf(cpu), show: duration},
	}, nil
}

// syncs returns the wall and CPU time of one write and sync, on average over fsyncs.
func syncs(dir string) (wall, cpu time.Duration, err error) {
	f, err := os.CreateTemp(dir, "wal-")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, fsyncs*commitBytes)); err != nil {
		return 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return 0, 0, err
	}
	record := make([]byte, commitBytes)
	cpu0, start := processCPU(), time.Now()
	for range fsyncs {
		if _, err := f.Write(record); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, fmt.Errorf("sync %s: %w", f.Name(), err)
		}
	}
	return time.Since(start) / fsyncs, (processCPU() - cpu0) / fsyncs, nil
}

// processCPU is the CPU time of the bench so far; nothing else runs while it measures syncs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
