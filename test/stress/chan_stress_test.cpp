// Stress: 100 producers x 10,000 messages to 100 consumers over one channel,
// at capacities 0, 1 and 64; every value must be received exactly once.
#define BOOST_TEST_MODULE chan_stress
#include <atomic>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;

BOOST_DATA_TEST_CASE(exactly_once, bdata::make(std::vector<std::size_t>{0, 1, 64}), cap) {
  constexpr int kProducers = 100, kConsumers = 100, kPer = 10000;
  std::vector<std::atomic<std::uint8_t>> seen(static_cast<std::size_t>(kProducers) * kPer);
  std::atomic<long> received{0};
  goro::run({.maxprocs = 2}, [&] {
    auto c = goro::make_chan<int>(cap);
    goro::wait_group producers, consumers;
    producers.add(kProducers);
    consumers.add(kConsumers);
    for (int p = 0; p < kProducers; ++p) {
      goro::go([&, p] {
        for (int i = 0; i < kPer; ++i) c.send(p * kPer + i);
        producers.done();
      });
    }
    for (int k = 0; k < kConsumers; ++k) {
      goro::go([&] {
        for (auto& v : c) {
          seen[static_cast<std::size_t>(v)].fetch_add(1, std::memory_order_relaxed);
          received.fetch_add(1, std::memory_order_relaxed);
        }
        consumers.done();
      });
    }
    producers.wait();
    c.close();
    consumers.wait();
  });
  BOOST_TEST(received.load() == static_cast<long>(kProducers) * kPer);
  long bad = 0;
  for (auto& n : seen) bad += n.load() != 1;
  BOOST_TEST(bad == 0);
}
