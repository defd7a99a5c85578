// Command spawn_join measures goroutine creation and completion: it spawns n
// goroutines that each call Done on a shared sync.WaitGroup and waits for all
// of them, timing from the first spawn until Wait returns.
//
// Go twin of the goro C++ benchmark bench/spawn_join.cpp.
package main

import (
	"flag"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

func run(n int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go wg.Done()
	}
	wg.Wait()
	return time.Since(start)
}

func main() {
	n := flag.Int("n", 1000000, "number of goroutines to spawn")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()

	d := benchutil.MedianDuration("spawn_join", *reps, func() time.Duration { return run(*n) })
	benchutil.Report("spawn_join", d.Seconds(), "s")
}
