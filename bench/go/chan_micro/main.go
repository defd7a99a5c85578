// Command chan_micro ports a few channel micro-benchmarks of the Go runtime's
// chan_test.go, each reported as wall time per operation:
//
//   - chan_uncontended: one goroutine, a buffered channel of capacity 100,
//     sending 100 values then receiving them back (BenchmarkChanUncontended);
//     per send+recv pair, n pairs;
//   - chan_contended: 2 goroutines each doing that loop on one shared
//     channel of capacity 200 (BenchmarkChanContended with 2 goroutines rather
//     than GOMAXPROCS); per send+recv pair, n pairs in total;
//   - chan_nonblocking: a select with default on a receive from an empty
//     unbuffered channel (BenchmarkChanNonblocking); per select, n selects;
//   - chan_popular: -g goroutines each loop on a select receiving from its own
//     unbuffered channel or from one shared channel that is never sent on,
//     for -rounds rounds; per round the main goroutine sends one value on
//     every goroutine's own channel (BenchmarkChanPopular); per send,
//     g*rounds sends, timed after the goroutines are spawned.
//
// -n scales the first three; chan_popular is sized by -g and -rounds.
//
// Go twin of the goro C++ benchmark bench/chan_micro.cpp.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

// batch is the number of sends (then receives) per loop iteration in the
// uncontended and contended benchmarks, as in chan_test.go.
const batch = 100

// sendRecvLoop sends batch values on c and receives batch values back,
// iters times.
func sendRecvLoop(c chan int, iters int) {
	for i := 0; i < iters; i++ {
		for j := 0; j < batch; j++ {
			c <- j
		}
		for j := 0; j < batch; j++ {
			<-c
		}
	}
}

func runUncontended(iters int) time.Duration {
	c := make(chan int, batch)
	start := time.Now()
	sendRecvLoop(c, iters)
	return time.Since(start)
}

// contenders is the number of goroutines sharing the channel in
// chan_contended.
const contenders = 2

func runContended(itersPer int) time.Duration {
	c := make(chan int, batch*contenders)
	var wg sync.WaitGroup
	wg.Add(contenders)
	start := time.Now()
	for g := 0; g < contenders; g++ {
		go func() {
			defer wg.Done()
			sendRecvLoop(c, itersPer)
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func runNonblocking(n int) time.Duration {
	c := make(chan int)
	hits := 0
	start := time.Now()
	for i := 0; i < n; i++ {
		select {
		case <-c:
			hits++
		default:
		}
	}
	d := time.Since(start)
	if hits != 0 {
		fmt.Fprintf(os.Stderr, "chan_nonblocking: received %d values from an empty channel\n", hits)
		os.Exit(1)
	}
	return d
}

func runPopular(g, rounds int) time.Duration {
	shared := make(chan bool) // never sent on
	own := make([]chan bool, g)
	var wg sync.WaitGroup
	wg.Add(g)
	for j := range own {
		d := make(chan bool)
		own[j] = d
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				select {
				case <-shared:
				case <-d:
				}
			}
		}()
	}
	start := time.Now()
	for i := 0; i < rounds; i++ {
		for _, d := range own {
			d <- true
		}
	}
	wg.Wait()
	return time.Since(start)
}

func perOp(d time.Duration, ops int) float64 {
	return float64(d.Nanoseconds()) / float64(ops)
}

func main() {
	n := flag.Int("n", 5000000, "operations for chan_uncontended, chan_contended and chan_nonblocking")
	g := flag.Int("g", 1000, "goroutines in chan_popular")
	rounds := flag.Int("rounds", 100, "rounds in chan_popular")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()
	if *n < batch*contenders {
		fmt.Fprintf(os.Stderr, "chan_micro: -n must be at least %d\n", batch*contenders)
		os.Exit(2)
	}
	if *g < 1 || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "chan_micro: -g and -rounds must be positive")
		os.Exit(2)
	}

	iters := *n / batch
	du := benchutil.MedianDuration("chan_uncontended", *reps, func() time.Duration { return runUncontended(iters) })

	itersPer := *n / (batch * contenders)
	dc := benchutil.MedianDuration("chan_contended", *reps, func() time.Duration { return runContended(itersPer) })

	dn := benchutil.MedianDuration("chan_nonblocking", *reps, func() time.Duration { return runNonblocking(*n) })

	dp := benchutil.MedianDuration("chan_popular", *reps, func() time.Duration { return runPopular(*g, *rounds) })

	benchutil.Report("chan_uncontended", perOp(du, iters*batch), "ns/op")
	benchutil.Report("chan_contended", perOp(dc, itersPer*batch*contenders), "ns/op")
	benchutil.Report("chan_nonblocking", perOp(dn, *n), "ns/op")
	benchutil.Report("chan_popular", perOp(dp, *g*(*rounds)), "ns/op")
}
