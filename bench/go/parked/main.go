// Command parked measures the memory cost of a blocked goroutine: it parks n
// goroutines on a receive from a channel that is never closed and reports the
// growth of the process RSS per goroutine.
//
// Go twin of the goro C++ benchmark bench/parked.cpp.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

// settle collects garbage and lets the runtime go quiet before RSS is read.
func settle() {
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
}

func mustRSS() int64 {
	kib, err := benchutil.RSSKiB()
	if err != nil {
		fmt.Fprintln(os.Stderr, "parked:", err)
		os.Exit(1)
	}
	return kib
}

func main() {
	n := flag.Int("n", 100000, "number of goroutines to park")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "parked: -n must be positive")
		os.Exit(2)
	}

	block := make(chan struct{}) // never closed: the goroutines stay parked
	var wg sync.WaitGroup

	settle()
	before := mustRSS()

	wg.Add(*n)
	for i := 0; i < *n; i++ {
		go func() {
			wg.Done()
			<-block
		}()
	}
	wg.Wait()

	settle()
	after := mustRSS()

	fmt.Printf("# parked: rss before %d KiB, after %d KiB, %d goroutines\n", before, after, *n)
	benchutil.Report("parked_rss", float64(after-before)/float64(*n), "KiB/fiber")
	runtime.KeepAlive(block)
}
