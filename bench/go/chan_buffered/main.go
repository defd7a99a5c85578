// Command chan_buffered measures channel throughput in three shapes, each
// reported as wall time per message:
//
//   - chan_buffered_1p1c: one producer sends n ints into a channel of
//     capacity 128 and one consumer receives them all (the sum is checked);
//   - chan_buffered_4p4c: 4 producers each send n/4 ints into one channel of
//     capacity 128, 4 consumers range over it until it is closed after the
//     producers finish (the total count is checked);
//   - chan_unbuffered_4p4c: the same 4x4 shape on an unbuffered channel with
//     n/10 messages in total.
//
// Go twin of the goro C++ benchmark bench/chan_buffered.cpp.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

const (
	capacity  = 128
	producers = 4
	consumers = 4
)

func run1p1c(n int) time.Duration {
	c := make(chan int, capacity)
	var sum int64
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			c <- i
		}
	}()
	go func() {
		defer wg.Done()
		var s int64
		for i := 0; i < n; i++ {
			s += int64(<-c)
		}
		sum = s
	}()
	wg.Wait()
	d := time.Since(start)
	if want := int64(n) * int64(n-1) / 2; sum != want {
		fmt.Fprintf(os.Stderr, "chan_buffered_1p1c: wrong sum %d, want %d\n", sum, want)
		os.Exit(1)
	}
	return d
}

// runMPMC runs producers goroutines each sending perProducer ints on a
// channel of capacity bufCap and consumers goroutines ranging over it; the
// channel is closed once every producer has finished.
func runMPMC(name string, bufCap, perProducer int) time.Duration {
	c := make(chan int, bufCap)
	counts := make([]int64, consumers)
	var prodWG, consWG sync.WaitGroup
	prodWG.Add(producers)
	consWG.Add(consumers)
	start := time.Now()
	for p := 0; p < producers; p++ {
		go func() {
			defer prodWG.Done()
			for i := 0; i < perProducer; i++ {
				c <- i
			}
		}()
	}
	for k := 0; k < consumers; k++ {
		k := k
		go func() {
			defer consWG.Done()
			var cnt int64
			for range c {
				cnt++
			}
			counts[k] = cnt
		}()
	}
	prodWG.Wait()
	close(c)
	consWG.Wait()
	d := time.Since(start)
	var total int64
	for _, cnt := range counts {
		total += cnt
	}
	if want := int64(producers) * int64(perProducer); total != want {
		fmt.Fprintf(os.Stderr, "%s: received %d messages, want %d\n", name, total, want)
		os.Exit(1)
	}
	return d
}

func perMsg(d time.Duration, msgs int) float64 {
	return float64(d.Nanoseconds()) / float64(msgs)
}

func main() {
	n := flag.Int("n", 10000000, "messages for the buffered runs (the unbuffered run uses n/10)")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()
	if *n < 10*producers {
		fmt.Fprintf(os.Stderr, "chan_buffered: -n must be at least %d\n", 10*producers)
		os.Exit(2)
	}

	d1 := benchutil.MedianDuration("chan_buffered_1p1c", *reps, func() time.Duration { return run1p1c(*n) })

	perB := *n / producers
	d4 := benchutil.MedianDuration("chan_buffered_4p4c", *reps, func() time.Duration {
		return runMPMC("chan_buffered_4p4c", capacity, perB)
	})

	perU := *n / 10 / producers
	du := benchutil.MedianDuration("chan_unbuffered_4p4c", *reps, func() time.Duration {
		return runMPMC("chan_unbuffered_4p4c", 0, perU)
	})

	benchutil.Report("chan_buffered_1p1c", perMsg(d1, *n), "ns/op")
	benchutil.Report("chan_buffered_4p4c", perMsg(d4, producers*perB), "ns/op")
	benchutil.Report("chan_unbuffered_4p4c", perMsg(du, producers*perU), "ns/op")
}
