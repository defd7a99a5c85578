// bench/select_fanin.cpp — two producers on their own unbuffered channels, one
// consumer selecting over both. Twin: bench/go/select_fanin.
#include <goro/goro.hpp>

#include "bench_util.hpp"

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 4'000'000);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  double med = 0;
  goro::run([&] {
    med = bench::median_seconds("select_fanin", reps, [&] {
      auto a = goro::make_chan<long>(), b = goro::make_chan<long>();
      auto t0 = bench::clock::now();
      for (auto& c : {a, b}) {
        goro::go([c, n] {
          for (long i = 0; i < n / 2; ++i) c.send(i);
        });
      }
      long sum = 0;
      auto take = [&](std::optional<long> v) { sum += *v; };
      for (long i = 0; i < 2 * (n / 2); ++i)
        goro::select(goro::on_recv(a, take), goro::on_recv(b, take));
      return bench::seconds_since(t0);
    });
  });
  bench::report("select_fanin", med * 1e9 / static_cast<double>(2 * (n / 2)), "ns/op");
}
