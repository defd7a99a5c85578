// Unit tests for goro::wait_group: fibers, OS threads, misuse, lifetime.
#define BOOST_TEST_MODULE wait_group
#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"

namespace bdata = boost::unit_test::data;
using goro_test::kProcs;

BOOST_AUTO_TEST_CASE(negative_counter_throws) {
  goro::wait_group wg;
  BOOST_CHECK_THROW(wg.done(), std::logic_error);
  wg.add(2);
  wg.done();
  wg.done();
  wg.wait();  // zero: returns at once
}

BOOST_AUTO_TEST_CASE(os_threads_without_runtime) {
  goro::wait_group wg;
  std::atomic<int> n{0};
  std::vector<std::thread> ts;
  wg.add(8);
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      n.fetch_add(1);
      wg.done();
    });
  }
  std::thread waiter([&] { wg.wait(); });
  wg.wait();
  waiter.join();
  BOOST_TEST(n.load() == 8);
  for (auto& t : ts) t.join();
}

BOOST_DATA_TEST_CASE(many_waiters_all_released, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    goro::wait_group gate, waited;
    gate.add(1);
    std::atomic<int> released{0};
    waited.add(100);
    for (int i = 0; i < 100; ++i) {
      goro::go([&] {
        gate.wait();
        released.fetch_add(1);
        waited.done();
      });
    }
    std::thread t([&] { gate.wait(); });  // an OS thread waits too
    for (int i = 0; i < 50; ++i) goro::yield();
    gate.done();
    waited.wait();
    t.join();
    BOOST_TEST(released.load() == 100);
  });
}

BOOST_DATA_TEST_CASE(reusable_after_zero, bdata::make(kProcs), procs) {
  goro::run({.maxprocs = procs}, [] {
    goro::wait_group wg;
    for (int round = 0; round < 200; ++round) {
      std::atomic<int> n{0};
      wg.add(10);
      for (int i = 0; i < 10; ++i) {
        goro::go([&] {
          n.fetch_add(1);
          wg.done();
        });
      }
      wg.wait();
      BOOST_TEST_REQUIRE(n.load() == 10);
    }
  });
}

BOOST_DATA_TEST_CASE(destroy_right_after_wait, bdata::make(kProcs), procs) {
  // The wait_group lives on the waiter's stack (heap here, to let ASan see a
  // use after free) and is destroyed the moment wait() returns.
  goro::run({.maxprocs = procs}, [] {
    for (int round = 0; round < 2000; ++round) {
      auto wg = std::make_unique<goro::wait_group>();
      wg->add(2);
      goro::wait_group* raw = wg.get();
      goro::go([raw] { raw->done(); });
      goro::go([raw] { raw->done(); });
      wg->wait();
      wg.reset();
    }
  });
}
