// Command yield measures the cost of a voluntary context switch: two
// goroutines each call runtime.Gosched n times and the wall time until both
// finish is divided by the total number of Gosched calls (2n). Reported with
// the GOMAXPROCS of the environment (yield) and with one processor (yield_1p).
//
// Go twin of the goro C++ benchmark bench/yield.cpp.
package main

import (
	"flag"
	"runtime"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

func run(n int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(2)
	loop := func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			runtime.Gosched()
		}
	}
	start := time.Now()
	go loop()
	go loop()
	wg.Wait()
	return time.Since(start)
}

func main() {
	n := flag.Int("n", 2000000, "Gosched calls per goroutine")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()

	d := benchutil.MedianDuration("yield", *reps, func() time.Duration { return run(*n) })

	// yield_1p: one processor, so every Gosched is a real switch between the
	// two goroutines (twin of goro's run with maxprocs = 1).
	prev := runtime.GOMAXPROCS(1)
	d1 := benchutil.MedianDuration("yield_1p", *reps, func() time.Duration { return run(*n) })
	runtime.GOMAXPROCS(prev)

	benchutil.Report("yield", float64(d.Nanoseconds())/float64(2*(*n)), "ns/op")
	benchutil.Report("yield_1p", float64(d1.Nanoseconds())/float64(2*(*n)), "ns/op")
}
