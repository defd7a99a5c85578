// bench/chan_pingpong.cpp — round trips of an int between two fibers over two
// unbuffered channels. Twin: bench/go/chan_pingpong.
#include <goro/goro.hpp>

#include "bench_util.hpp"

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 1'000'000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  double med = 0;
  goro::run([&] {
    med = bench::median_seconds("chan_pingpong", reps, [&] {
      auto ping = goro::make_chan<long>(), pong = goro::make_chan<long>();
      goro::wait_group wg;
      wg.add(2);
      auto t0 = bench::clock::now();
      goro::go([&] {
        long v = 0;
        for (long i = 0; i < n; ++i) {
          ping.send(v);
          v = *pong.recv();
        }
        wg.done();
      });
      goro::go([&] {
        for (long i = 0; i < n; ++i) pong.send(*ping.recv() + 1);
        wg.done();
      });
      wg.wait();
      return bench::seconds_since(t0);
    });
  });
  bench::report("chan_pingpong", med * 1e9 / static_cast<double>(n), "ns/op");
}
