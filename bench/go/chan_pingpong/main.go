// Command chan_pingpong measures the round-trip latency of unbuffered
// channels: two goroutines bounce an int over two unbuffered channels (ping
// and pong) n times, and the wall time until both finish is divided by n.
//
// Go twin of the goro C++ benchmark bench/chan_pingpong.cpp.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

func run(n int) time.Duration {
	ping := make(chan int)
	pong := make(chan int)
	var got int
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	go func() { // pinger: sends v, expects v+1 back
		defer wg.Done()
		v := 0
		for i := 0; i < n; i++ {
			ping <- v
			v = <-pong
		}
		got = v
	}()
	go func() { // ponger: echoes every value incremented by one
		defer wg.Done()
		for i := 0; i < n; i++ {
			v := <-ping
			pong <- v + 1
		}
	}()
	wg.Wait()
	d := time.Since(start)
	if got != n {
		fmt.Fprintf(os.Stderr, "chan_pingpong: wrong result %d, want %d\n", got, n)
		os.Exit(1)
	}
	return d
}

func main() {
	n := flag.Int("n", 1000000, "number of round trips")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "chan_pingpong: -n must be positive")
		os.Exit(2)
	}

	d := benchutil.MedianDuration("chan_pingpong", *reps, func() time.Duration { return run(*n) })
	benchutil.Report("chan_pingpong", float64(d.Nanoseconds())/float64(*n), "ns/op")
}
