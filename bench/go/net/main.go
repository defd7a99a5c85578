// Command net measures Go's net package over loopback:
//
//   - echo_50x4000: 50 connections, each 4,000 round trips of a 32-byte
//     message to an echo server in the same process (a goroutine per
//     connection on both sides); ns per message, i.e. wall time / 200,000
//     round trips. The connections are dialed before the clock starts.
//
// Go twin of the goro C++ benchmark bench/net.cpp.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"goro/bench/go/internal/benchutil"
)

const msgSize = 32

func die(what string, err error) {
	fmt.Fprintf(os.Stderr, "net: %s: %v\n", what, err)
	os.Exit(1)
}

// echo is the server's side of one connection: echo whatever arrives.
func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func echoRound(addr string, conns, rounds int) time.Duration {
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			die("dial", err)
		}
		cs[i] = c
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(conns)
	for i := 0; i < conns; i++ {
		c := cs[i]
		go func() {
			out := make([]byte, msgSize)
			in := make([]byte, msgSize)
			<-start
			for r := 0; r < rounds; r++ {
				out[0] = byte(r)
				if _, err := c.Write(out); err != nil {
					die("write", err)
				}
				if _, err := io.ReadFull(c, in); err != nil {
					die("read", err)
				}
			}
			if in[0] != byte(rounds-1) {
				die("echo", fmt.Errorf("wrong echo"))
			}
			wg.Done()
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	d := time.Since(t0)
	for _, c := range cs {
		c.Close() // the server's goroutines see EOF
	}
	return d
}

func main() {
	conns := flag.Int("conns", 50, "connections")
	rounds := flag.Int("rounds", 4000, "round trips per connection")
	reps := flag.Int("reps", 5, "repetitions (the median is reported)")
	flag.Parse()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		die("listen", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(c)
		}
	}()
	addr := ln.Addr().String()
	d := benchutil.MedianDuration("echo_50x4000", *reps, func() time.Duration {
		return echoRound(addr, *conns, *rounds)
	})
	ln.Close()
	msgs := float64(*conns * *rounds)
	fmt.Printf("# echo_50x4000: %.0f msgs/s\n", msgs/d.Seconds())
	benchutil.Report("echo_50x4000", float64(d.Nanoseconds())/msgs, "ns/msg")
}
