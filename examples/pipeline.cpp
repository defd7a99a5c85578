// pipeline — fan-out/fan-in with cancellation through a done channel, the
// pattern from the Go blog's "Go Concurrency Patterns: Pipelines".
//
//   gen -> sq (x3 workers, fan-out) -> merge (fan-in) -> main
//
// main takes only the first few results, then closes `done`: every stage
// selects on done and returns, so nothing leaks and nothing blocks forever.
#include <goro/goro.hpp>

#include <cstdio>
#include <memory>
#include <vector>

namespace {

goro::chan<int> gen(goro::chan<void> done, int n) {
  auto out = goro::make_chan<int>();
  goro::go([=] {
    for (int i = 1; i <= n; ++i) {
      if (goro::select(goro::on_send(out, i), goro::on_recv(done)) == 1) break;
    }
    out.close();
  });
  return out;
}

goro::chan<int> sq(goro::chan<void> done, goro::chan<int> in) {
  auto out = goro::make_chan<int>();
  goro::go([=] {
    for (auto& v : in) {
      if (goro::select(goro::on_send(out, v * v), goro::on_recv(done)) == 1) break;
    }
    out.close();
  });
  return out;
}

goro::chan<int> merge(goro::chan<void> done, const std::vector<goro::chan<int>>& ins) {
  auto out = goro::make_chan<int>();
  auto wg = std::make_shared<goro::wait_group>();
  wg->add(static_cast<std::int64_t>(ins.size()));
  for (const auto& in : ins) {
    goro::go([=] {
      for (auto& v : in) {
        if (goro::select(goro::on_send(out, v), goro::on_recv(done)) == 1) break;
      }
      wg->done();
    });
  }
  goro::go([=] {
    wg->wait();
    out.close();
  });
  return out;
}

}  // namespace

int main() {
  goro::run([] {
    auto done = goro::make_chan<void>();
    auto in = gen(done, 1000);
    std::vector<goro::chan<int>> workers = {sq(done, in), sq(done, in), sq(done, in)};
    auto results = merge(done, workers);
    long sum = 0;
    for (int i = 0; i < 10; ++i) sum += *results.recv();  // take just ten
    done.close();                                         // cancel everything upstream
    for (auto& v : results) (void)v;                      // drain until merge closes it
    std::printf("pipeline: sum of the first ten squares received = %ld; fibers left: %lld\n", sum,
                static_cast<long long>(goro::num_fibers()));
  });
}
