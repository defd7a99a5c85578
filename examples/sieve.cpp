// sieve — Go's concurrent prime sieve: a generator fiber feeds a chain of
// filter fibers, one per prime found, each connected to the next by an
// unbuffered channel. Prints the first N primes (default 100).
//
// Go original: https://go.dev/doc/play/sieve.go
#include <goro/goro.hpp>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 100;
  goro::run([n] {
    auto ch = goro::make_chan<int>();
    goro::go([ch] {  // generate 2, 3, 4, ...
      for (int i = 2;; ++i) ch.send(i);
    });
    for (int i = 0; i < n; ++i) {
      int prime = *ch.recv();
      std::printf("%d%c", prime, i + 1 == n ? '\n' : ' ');
      auto next = goro::make_chan<int>();
      goro::go([in = ch, out = next, prime] {  // filter multiples of prime
        for (;;) {
          int v = *in.recv();
          if (v % prime != 0) out.send(v);
        }
      });
      ch = next;
    }
  });  // the generator and filters are still blocked: run() unwinds them
}
