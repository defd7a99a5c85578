// Command select_fanin measures a two-way select receive: two producer
// goroutines each send n/2 ints on their own unbuffered channel and one
// consumer loops on a select over both channels until it has received all n
// values (the sum is checked). Reported as wall time per message.
//
// Go twin of the goro C++ benchmark bench/select_fanin.cpp.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

func run(half int) time.Duration {
	a := make(chan int)
	b := make(chan int)
	produce := func(c chan<- int, wg *sync.WaitGroup) {
		defer wg.Done()
		for i := 0; i < half; i++ {
			c <- i
		}
	}
	var sum int64
	var wg sync.WaitGroup
	wg.Add(3)
	start := time.Now()
	go produce(a, &wg)
	go produce(b, &wg)
	go func() {
		defer wg.Done()
		var s int64
		for got := 0; got < 2*half; got++ {
			select {
			case v := <-a:
				s += int64(v)
			case v := <-b:
				s += int64(v)
			}
		}
		sum = s
	}()
	wg.Wait()
	d := time.Since(start)
	if want := int64(half) * int64(half-1); sum != want {
		fmt.Fprintf(os.Stderr, "select_fanin: wrong sum %d, want %d\n", sum, want)
		os.Exit(1)
	}
	return d
}

func main() {
	n := flag.Int("n", 4000000, "total messages (n/2 per producer)")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()
	if *n < 2 {
		fmt.Fprintln(os.Stderr, "select_fanin: -n must be at least 2")
		os.Exit(2)
	}
	half := *n / 2

	d := benchutil.MedianDuration("select_fanin", *reps, func() time.Duration { return run(half) })
	benchutil.Report("select_fanin", float64(d.Nanoseconds())/float64(2*half), "ns/op")
}
