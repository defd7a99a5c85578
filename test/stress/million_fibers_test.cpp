// Stress: 1,000,000 simultaneously live, parked fibers on a stock kernel
// (vm.max_map_count 65530): guard pages up to the budget, slab stacks after.
#define BOOST_TEST_MODULE million_fibers
#include <sys/resource.h>

#include <atomic>
#include <fstream>
#include <string>

#include "common.hpp"
#include "goro/goro.hpp"

namespace {

long mappings() {
  std::ifstream f("/proc/self/maps");
  std::string line;
  long n = 0;
  while (std::getline(f, line)) ++n;
  return n;
}

long max_map_count() {
  std::ifstream f("/proc/sys/vm/max_map_count");
  long n = 0;
  f >> n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(one_million_parked_fibers) {
  constexpr int kFibers = 1'000'000;
  std::atomic<long> sum{0};
  long peak_maps = 0;
  std::int64_t live = 0;
  goro::run({.maxprocs = 2}, [&] {
    goro::wait_group parked, gate, finished;
    gate.add(1);
    parked.add(kFibers);
    finished.add(kFibers);
    for (int i = 0; i < kFibers; ++i) {
      goro::go([&, i] {
        parked.done();
        gate.wait();  // every fiber is parked here at once
        sum.fetch_add(i, std::memory_order_relaxed);
        finished.done();
      });
    }
    parked.wait();
    live = goro::num_fibers();
    peak_maps = mappings();
    gate.done();
    finished.wait();
  });
  BOOST_TEST(live == kFibers + 1);
  BOOST_TEST(sum.load() == static_cast<long>(kFibers) * (kFibers - 1) / 2);
  BOOST_TEST_MESSAGE("mappings with 1M live fibers: " << peak_maps << " (limit " << max_map_count()
                                                      << ")");
  BOOST_TEST(peak_maps < max_map_count());
}
