// Command timers measures timers and cancellation at scale:
//
//   - sleepers_100k: 100,000 goroutines each sleep 50 ms; wall time until
//     all have woken;
//   - cancel_broadcast: 100,000 goroutines blocked in a two-case select on
//     one context's Done(); time from cancel() until all saw it;
//   - timer_churn: create a 1 h timer and stop it, 1M times (ns/op).
//
// Go twin of the goro C++ benchmark bench/timers.cpp.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"goro/bench/go/internal/benchutil"
)

func sleepers(n int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(n)
	start := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			time.Sleep(50 * time.Millisecond)
			wg.Done()
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func cancelBroadcast(n int) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	never := make(chan int)
	var wg sync.WaitGroup
	var started int64
	wg.Add(n)
	done := ctx.Done()
	for i := 0; i < n; i++ {
		go func() {
			atomic.AddInt64(&started, 1)
			select {
			case <-done:
			case <-never:
			}
			wg.Done()
		}()
	}
	for atomic.LoadInt64(&started) < int64(n) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	cancel()
	wg.Wait()
	return time.Since(start)
}

func churn(n int) time.Duration {
	start := time.Now()
	prevented := 0
	for i := 0; i < n; i++ {
		t := time.NewTimer(time.Hour)
		if t.Stop() {
			prevented++
		}
	}
	if prevented != n {
		fmt.Fprintln(os.Stderr, "timers: Stop failed to prevent a fire")
		os.Exit(1)
	}
	return time.Since(start)
}

func main() {
	n := flag.Int("n", 100000, "goroutines for the sleep and broadcast runs")
	churnN := flag.Int("churn", 1000000, "timers created and stopped")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()

	a := benchutil.MedianDuration("sleepers_100k", *reps, func() time.Duration { return sleepers(*n) })
	b := benchutil.MedianDuration("cancel_broadcast", *reps, func() time.Duration { return cancelBroadcast(*n) })
	c := benchutil.MedianDuration("timer_churn", *reps, func() time.Duration { return churn(*churnN) })

	benchutil.Report("sleepers_100k", float64(a.Microseconds())/1e3, "ms")
	benchutil.Report("cancel_broadcast", float64(b.Microseconds())/1e3, "ms")
	benchutil.Report("timer_churn", float64(c.Nanoseconds())/float64(*churnN), "ns/op")
}
