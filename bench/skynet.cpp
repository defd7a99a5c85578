// bench/skynet.cpp — the skynet benchmark: a tree of fibers, 10 children per
// node down to 1,000,000 leaves; each leaf sends its number to its parent
// over a channel, each node sums its children's and sends the sum up.
// Twin: bench/go/skynet.
#include <goro/goro.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "bench_util.hpp"

namespace {

void skynet(goro::chan<std::int64_t> c, std::int64_t num, std::int64_t size, std::int64_t div) {
  if (size == 1) {
    c.send(num);
    return;
  }
  auto rc = goro::make_chan<std::int64_t>(static_cast<std::size_t>(div));
  for (std::int64_t i = 0; i < div; ++i)
    goro::go(skynet, rc, num + i * (size / div), size / div, div);
  std::int64_t sum = 0;
  for (std::int64_t i = 0; i < div; ++i) sum += *rc.recv();
  c.send(sum);
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t size = bench::flag(argc, argv, "-n", 1'000'000);
  const std::int64_t div = bench::flag(argc, argv, "-div", 10);
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  double med = 0;
  goro::run([&] {
    med = bench::median_seconds("skynet", reps, [&] {
      auto t0 = bench::clock::now();
      auto c = goro::make_chan<std::int64_t>(1);
      goro::go(skynet, c, 0, size, div);
      std::int64_t got = *c.recv();
      double s = bench::seconds_since(t0);
      if (got != size * (size - 1) / 2) {
        std::fprintf(stderr, "skynet: wrong result %lld\n", static_cast<long long>(got));
        std::exit(1);
      }
      return s;
    });
  });
  bench::report("skynet", med, "s");
}
