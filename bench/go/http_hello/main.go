// Command http_hello is the Go twin of examples/http_hello.cpp for
// bench/http.sh: a net/http server answering every request with
// "Hello, World!\n" as text/plain, with keep-alive (net/http's default).
//
//	http_hello -listen 127.0.0.1:8080
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	flag.Parse()

	body := []byte("Hello, World!\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(body)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "http_hello:", err)
		os.Exit(1)
	}
	fmt.Printf("http_hello: listening on http://%s/ (GOMAXPROCS %d)\n", ln.Addr(), runtime.GOMAXPROCS(0))
	log.Fatal(http.Serve(ln, h))
}
