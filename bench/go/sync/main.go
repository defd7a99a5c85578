// Command sync measures Go's sync and x/sync primitives:
//
//   - mutex_contended: 64 goroutines increment one counter under a
//     sync.Mutex, 2M increments in all (ns per increment);
//   - mutex_uncontended: Lock/Unlock of a mutex nobody else touches (ns per
//     pair);
//   - rwmutex_read: 64 goroutines RLock/RUnlock one sync.RWMutex, 2M pairs
//     in all (ns per pair);
//   - wg_fanout_100k: start 100,000 goroutines that each call Done on one
//     WaitGroup, then Wait (ms);
//   - sem_pool_1m: a worker pool bounded by semaphore.Weighted(8): 1M tiny
//     tasks, each Acquire(ctx, 1) then a goroutine that works and Releases
//     (ms).
//
// Go twin of the goro C++ benchmark bench/sync.cpp.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"goro/bench/go/internal/benchutil"
)

func mutexContended(workers, total int) time.Duration {
	var mu sync.Mutex
	counter := 0
	var wg sync.WaitGroup
	wg.Add(workers)
	per := total / workers
	start := time.Now()
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < per; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if counter != per*workers {
		fmt.Fprintln(os.Stderr, "sync: lost increments")
		os.Exit(1)
	}
	return d
}

//go:noinline
func lockUnlock(mu *sync.Mutex, x *int) {
	mu.Lock()
	*x++
	mu.Unlock()
}

func mutexUncontended(n int) time.Duration {
	var mu sync.Mutex
	x := 0
	start := time.Now()
	for i := 0; i < n; i++ {
		lockUnlock(&mu, &x)
	}
	d := time.Since(start)
	if x != n {
		os.Exit(1)
	}
	return d
}

func rwmutexRead(workers, total int) time.Duration {
	var mu sync.RWMutex
	shared := 42
	var wg sync.WaitGroup
	wg.Add(workers)
	per := total / workers
	sums := make([]int, workers*8)
	start := time.Now()
	for w := 0; w < workers; w++ {
		w := w
		go func() {
			s := 0
			for i := 0; i < per; i++ {
				mu.RLock()
				s += shared
				mu.RUnlock()
			}
			sums[w*8] = s
			wg.Done()
		}()
	}
	wg.Wait()
	d := time.Since(start)
	for w := 0; w < workers; w++ {
		if sums[w*8] != 42*per {
			os.Exit(1)
		}
	}
	return d
}

func wgFanout(n int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			wg.Done()
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func semPool(tasks int, limit int64) time.Duration {
	ctx := context.Background()
	sem := semaphore.NewWeighted(limit)
	var done int64
	var mu sync.Mutex
	start := time.Now()
	for i := 0; i < tasks; i++ {
		if err := sem.Acquire(ctx, 1); err != nil {
			os.Exit(1)
		}
		go func() {
			mu.Lock()
			done++
			mu.Unlock()
			sem.Release(1)
		}()
	}
	if err := sem.Acquire(ctx, limit); err != nil {
		os.Exit(1)
	}
	d := time.Since(start)
	if done != int64(tasks) {
		fmt.Fprintln(os.Stderr, "sync: lost tasks")
		os.Exit(1)
	}
	return d
}

func main() {
	total := flag.Int("n", 2000000, "lock operations in the contended runs")
	unc := flag.Int("uncontended", 20000000, "lock/unlock pairs uncontended")
	fan := flag.Int("fanout", 100000, "goroutines in the wait-group fan-out")
	tasks := flag.Int("tasks", 1000000, "tasks through the semaphore pool")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()

	a := benchutil.MedianDuration("mutex_contended", *reps, func() time.Duration { return mutexContended(64, *total) })
	b := benchutil.MedianDuration("mutex_uncontended", *reps, func() time.Duration { return mutexUncontended(*unc) })
	c := benchutil.MedianDuration("rwmutex_read", *reps, func() time.Duration { return rwmutexRead(64, *total) })
	d := benchutil.MedianDuration("wg_fanout_100k", *reps, func() time.Duration { return wgFanout(*fan) })
	e := benchutil.MedianDuration("sem_pool_1m", *reps, func() time.Duration { return semPool(*tasks, 8) })

	benchutil.Report("mutex_contended", float64(a.Nanoseconds())/float64(*total/64*64), "ns/op")
	benchutil.Report("mutex_uncontended", float64(b.Nanoseconds())/float64(*unc), "ns/op")
	benchutil.Report("rwmutex_read", float64(c.Nanoseconds())/float64(*total/64*64), "ns/op")
	benchutil.Report("wg_fanout_100k", float64(d.Microseconds())/1e3, "ms")
	benchutil.Report("sem_pool_1m", float64(e.Microseconds())/1e3, "ms")
}
