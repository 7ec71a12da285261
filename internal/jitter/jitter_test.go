package jitter_test

import (
	"testing"
	"time"

	"github.com/concur-dev/concur/internal/jitter"
)

// A race the jitter is built to expose: a read, a pause, then a write based on the read.
// Without jitter the goroutines rarely overlap; with it, lost updates are all but certain.
func TestJitterExposesLostUpdates(t *testing.T) {
	const workers = 10
	j := jitter.New(5 * time.Millisecond)
	counter := make(chan int, 1) // a one-slot box: reads and writes are race-free, the logic is not
	counter <- 0
	done := make(chan struct{})
	for range workers {
		go func() {
			old := <-counter
			counter <- old
			j.Sleep()
			<-counter
			counter <- old + 1
			done <- struct{}{}
		}()
	}
	for range workers {
		<-done
	}
	if got := <-counter; got == workers {
		t.Fatalf("counter = %d: jitter should have made updates get lost", got)
	}
}

func TestZeroJitterIsOff(t *testing.T) {
	var j jitter.Jitter
	if j.On() {
		t.Fatal("zero Jitter is on")
	}
	if !jitter.New(time.Millisecond).On() {
		t.Fatal("New(1ms) is off")
	}
}
