// Command skynet runs the classic skynet benchmark: a tree of goroutines with
// fan-out div down to size leaves; each leaf sends its number to its parent
// and every parent sends the sum of its children's results upwards through a
// buffered channel of capacity div.
//
// Go twin of the goro C++ benchmark bench/skynet.cpp.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"goro/bench/go/internal/benchutil"
)

func skynet(c chan<- int64, num, size, div int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64, div)
	for i := int64(0); i < div; i++ {
		go skynet(rc, num+i*(size/div), size/div, div)
	}
	var sum int64
	for i := int64(0); i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func run(size, div int64) time.Duration {
	start := time.Now()
	c := make(chan int64, 1)
	go skynet(c, 0, size, div)
	got := <-c
	d := time.Since(start)
	if want := size * (size - 1) / 2; got != want {
		fmt.Fprintf(os.Stderr, "skynet: wrong result %d, want %d\n", got, want)
		os.Exit(1)
	}
	return d
}

func main() {
	size := flag.Int64("n", 1000000, "number of leaves (a power of -div)")
	div := flag.Int64("div", 10, "fan-out of each node")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()
	if *div < 2 {
		fmt.Fprintln(os.Stderr, "skynet: -div must be at least 2")
		os.Exit(2)
	}
	for s := *size; s != 1; s /= *div {
		if s < 1 || s%*div != 0 {
			fmt.Fprintln(os.Stderr, "skynet: -n must be a power of -div")
			os.Exit(2)
		}
	}

	d := benchutil.MedianDuration("skynet", *reps, func() time.Duration { return run(*size, *div) })
	benchutil.Report("skynet", d.Seconds(), "s")
}
