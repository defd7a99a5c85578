// bench/chan_micro.cpp — ports of the Go runtime's channel micro-benchmarks
// (runtime/chan_test.go): uncontended and contended buffered send/recv in
// batches of 100, a non-blocking select on an empty channel, and a "popular"
// channel selected on by 1000 fibers. Twin: bench/go/chan_micro.
#include <goro/goro.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_util.hpp"

namespace {

constexpr int kBatch = 100;
constexpr int kContenders = 2;

void send_recv_loop(const goro::chan<int>& c, long iters) {
  for (long i = 0; i < iters; ++i) {
    for (int j = 0; j < kBatch; ++j) c.send(j);
    for (int j = 0; j < kBatch; ++j) (void)c.recv();
  }
}

double run_uncontended(long iters) {
  auto c = goro::make_chan<int>(kBatch);
  auto t0 = bench::clock::now();
  send_recv_loop(c, iters);
  return bench::seconds_since(t0);
}

double run_contended(long iters_per) {
  auto c = goro::make_chan<int>(kBatch * kContenders);
  goro::wait_group wg;
  wg.add(kContenders);
  auto t0 = bench::clock::now();
  for (int g = 0; g < kContenders; ++g) {
    goro::go([&] {
      send_recv_loop(c, iters_per);
      wg.done();
    });
  }
  wg.wait();
  return bench::seconds_since(t0);
}

double run_nonblocking(long n) {
  auto c = goro::make_chan<int>();
  long hits = 0;
  auto t0 = bench::clock::now();
  for (long i = 0; i < n; ++i) {
    if (goro::select(goro::on_recv(c), goro::on_default()) == 0) ++hits;
  }
  double s = bench::seconds_since(t0);
  if (hits != 0) {
    std::fprintf(stderr, "chan_nonblocking: received %ld values from an empty channel\n", hits);
    std::exit(1);
  }
  return s;
}

double run_popular(int g, int rounds) {
  auto shared = goro::make_chan<bool>();  // never sent on
  std::vector<goro::chan<bool>> own;
  goro::wait_group wg;
  wg.add(g);
  for (int j = 0; j < g; ++j) {
    own.push_back(goro::make_chan<bool>());
    goro::go([&wg, shared, d = own.back(), rounds] {
      for (int i = 0; i < rounds; ++i) goro::select(goro::on_recv(shared), goro::on_recv(d));
      wg.done();
    });
  }
  auto t0 = bench::clock::now();
  for (int i = 0; i < rounds; ++i) {
    for (auto& d : own) d.send(true);
  }
  wg.wait();
  return bench::seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 5'000'000);
  const int g = static_cast<int>(bench::flag(argc, argv, "-g", 1000));
  const int rounds = static_cast<int>(bench::flag(argc, argv, "-rounds", 100));
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  const long iters = n / kBatch;
  const long iters_per = n / (kBatch * kContenders);
  double du = 0, dc = 0, dn = 0, dp = 0;
  goro::run([&] {
    du = bench::median_seconds("chan_uncontended", reps, [&] { return run_uncontended(iters); });
    dc = bench::median_seconds("chan_contended", reps, [&] { return run_contended(iters_per); });
    dn = bench::median_seconds("chan_nonblocking", reps, [&] { return run_nonblocking(n); });
    dp = bench::median_seconds("chan_popular", reps, [&] { return run_popular(g, rounds); });
  });
  auto per_op = [](double s, double ops) { return s * 1e9 / ops; };
  bench::report("chan_uncontended", per_op(du, static_cast<double>(iters * kBatch)), "ns/op");
  bench::report("chan_contended", per_op(dc, static_cast<double>(iters_per * kBatch * kContenders)),
                "ns/op");
  bench::report("chan_nonblocking", per_op(dn, static_cast<double>(n)), "ns/op");
  bench::report("chan_popular", per_op(dp, static_cast<double>(g) * rounds), "ns/op");
}
