// Unit tests for goro::net: TCP, UDP and Unix sockets on the netpoller, on
// loopback only. Echo at scale, deadlines and cancellation, EOF, half-close,
// reset, close() waking blocked fibers, back-pressure, addresses, fd leaks,
// plain OS threads with and without a runtime, and the scheduling property
// the netpoller exists for: a fiber blocked on a socket does not hold its
// worker.
//
// Boost.Test's assertions are not thread-safe and fibers may run on several
// workers, so fibers other than the main one record what went wrong in a
// `failures` log that the main fiber reports.
#define BOOST_TEST_MODULE net
#include <dirent.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common.hpp"
#include "goro/goro.hpp"
#include "goro/net.hpp"

namespace bdata = boost::unit_test::data;
namespace net = goro::net;
using goro_test::kSlow;
using goro_test::ms_since;
using goro_test::procs;
using namespace std::chrono_literals;
using sclock = std::chrono::steady_clock;

// Not an anonymous namespace: the data-driven cases are templates whose
// lambdas capture these types, which GCC warns about (-Wsubobject-linkage).
namespace net_test {

const goro::context kBg = goro::context::background();

// A context that ends after `d`, for waits that a library bug could make
// endless: the test then fails instead of hanging. Background when no
// runtime runs (timers need one).
goro::context bounded(goro::clock::duration d = 30s) {
  if (goro::num_fibers() == 0) return kBg;
  return goro::with_timeout(kBg, d).first;
}

// What went wrong in fibers and threads, reported by the main fiber.
class failures {
 public:
  void add(std::string what) {
    std::lock_guard lk(mu_);
    if (first_.size() < 20) first_.push_back(std::move(what));
    ++count_;
  }
  template <class S>
  void check(const S& st, std::string_view what) {
    if (!st.ok()) add(std::string(what) + ": " + std::string(status_of(st).ToString()));
  }
  // Reports everything recorded; call from the main fiber or test thread.
  void report() {
    std::lock_guard lk(mu_);
    for (const std::string& s : first_) BOOST_ERROR(s);
    BOOST_TEST(count_ == 0);
  }

 private:
  static const absl::Status& status_of(const absl::Status& s) { return s; }
  template <class T>
  static const absl::Status& status_of(const absl::StatusOr<T>& s) {
    return s.status();
  }

  goro::mutex mu_;
  std::vector<std::string> first_;
  long count_ = 0;
};

std::string str(const absl::Status& st) { return std::string(st.ToString()); }

std::span<const char> bytes(std::string_view s) { return {s.data(), s.size()}; }

// A deterministic message for connection `c`, round trip `m`: 1..3000 bytes
// whose content depends on both, so a crossed or corrupted echo shows.
std::string payload(int c, int m) {
  const std::size_t n = 1 + static_cast<std::size_t>(c * 37 + m * 101) % 3000;
  std::string s(n, '\0');
  std::uint32_t x = static_cast<std::uint32_t>(c) * 2654435761u + static_cast<std::uint32_t>(m);
  for (char& ch : s) {
    x = x * 1664525u + 1013904223u;
    ch = static_cast<char>(x >> 24);
  }
  return s;
}

// 1,000 connections need ~2,000 descriptors.
void raise_nofile() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < 4096 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int count_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

// Whether this machine can bind a socket to ::1 (IPv6 may be disabled).
bool ipv6_available() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Echoes everything read on `c` until EOF or an error, then closes it.
void echo_conn(net::conn& c) {
  const goro::context ctx = bounded(60s);
  std::array<char, 16384> buf;
  for (;;) {
    absl::StatusOr<std::size_t> n = c.read(ctx, buf);
    if (!n.ok()) break;
    if (!c.write(std::span<const char>(buf.data(), *n)).ok()) break;
  }
  (void)c.close();
}

// Accepts on `ln` until it is closed, a fiber per connection echoing; `conns`
// counts the live connection fibers, `accepted` the connections.
void serve_echo(net::listener& ln, goro::wait_group& conns, std::atomic<int>* accepted = nullptr) {
  for (;;) {
    absl::StatusOr<net::conn> c = ln.accept();
    if (!c.ok()) return;
    if (accepted != nullptr) accepted->fetch_add(1);
    conns.add(1);
    goro::go([c = std::move(*c), &conns]() mutable {
      echo_conn(c);
      conns.done();
    });
  }
}

// A running echo server: start() in a fiber, stop() waits for every
// connection fiber (the clients must have closed their ends).
struct echo_server {
  net::listener ln;
  net::address addr;
  goro::wait_group conns;
  goro::wait_group acceptor;
  std::atomic<int> accepted{0};

  explicit echo_server(std::string_view at, net::listen_options o = {}) {
    absl::StatusOr<net::listener> l = net::listen_tcp(at, o);
    BOOST_REQUIRE_MESSAGE(l.ok(), str(l.status()));
    ln = std::move(*l);
    absl::StatusOr<net::address> a = ln.local_address();
    BOOST_REQUIRE(a.ok());
    addr = *a;
    acceptor.add(1);
    goro::go([this] {
      serve_echo(ln, conns, &accepted);
      acceptor.done();
    });
  }
  void stop() {
    BOOST_TEST(ln.close().ok());
    acceptor.wait();
    conns.wait();
  }
};

// One client's session: `rounds` exact echoes of distinct payloads, then a
// half-close and the server's EOF.
void echo_client(const net::address& to, int id, int rounds, failures& f) {
  absl::StatusOr<net::conn> c = net::dial(kBg, to);
  if (!c.ok()) return f.add("dial " + std::to_string(id) + ": " + str(c.status()));
  // 1,000 of these under TSan on a loaded 2-CPU machine took over 30 s
  // (with or without the change under test): the bound only turns a hang
  // into a failure, so it scales with the sanitizers' slowness.
  const goro::context ctx = bounded(30s * kSlow);
  std::string got;
  for (int m = 0; m < rounds; ++m) {
    const std::string p = payload(id, m);
    if (absl::Status st = c->write(bytes(p)); !st.ok()) return f.add("write: " + str(st));
    got.assign(p.size(), '\0');
    if (absl::Status st = c->read_full(ctx, std::span<char>(got)); !st.ok()) {
      return f.add("read_full: " + str(st));
    }
    if (got != p) return f.add("conn " + std::to_string(id) + ": echo differs");
  }
  if (absl::Status st = c->close_write(); !st.ok()) return f.add("close_write: " + str(st));
  char b[16];
  absl::StatusOr<std::size_t> n = c->read(ctx, b);
  if (!net::is_eof(n.status())) f.add("expected EOF after close_write, got " + str(n.status()));
  f.check(c->close(), "close");
}

// A connected pair over loopback: {dialed, accepted}.
std::pair<net::conn, net::conn> tcp_pair(net::listener& ln) {
  absl::StatusOr<net::address> a = ln.local_address();
  BOOST_REQUIRE(a.ok());
  absl::StatusOr<net::conn> c = net::dial(kBg, *a);
  BOOST_REQUIRE_MESSAGE(c.ok(), str(c.status()));
  absl::StatusOr<net::conn> s = ln.accept();
  BOOST_REQUIRE_MESSAGE(s.ok(), str(s.status()));
  return {std::move(*c), std::move(*s)};
}

net::listener must_listen(std::string_view at, net::listen_options o = {}) {
  absl::StatusOr<net::listener> l = net::listen_tcp(at, o);
  BOOST_REQUIRE_MESSAGE(l.ok(), str(l.status()));
  return std::move(*l);
}

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
struct temp_dir {
  std::string path;
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/goro-net-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') ::unlink((path + "/" + e->d_name).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path.c_str());
  }
};

// More than loopback's socket buffers hold (a few MiB each way), so a write
// of it to a peer that does not read must wait. Made on first use, which
// the tests place before goro::run: filling it would hold a worker.
const std::string& big_buffer() {
  static const std::string big(std::size_t{64} << 20, 'w');
  return big;
}

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace net_test

using namespace net_test;

// ---- echo at scale -------------------------------------------------------------

BOOST_DATA_TEST_CASE(echo_1000_concurrent_connections, bdata::make({1, 2}), n) {
  raise_nofile();
  goro::run(procs(n), [] {
    constexpr int kConns = 1000;
    const int rounds = 10 / (kSlow > 1 ? 2 : 1);
    net::listen_options o;
    o.backlog = 4096;  // all 1,000 may connect before the acceptor runs
    echo_server srv("127.0.0.1:0", o);
    failures f;
    goro::wait_group clients;
    clients.add(kConns);
    for (int i = 0; i < kConns; ++i) {
      goro::go([&, i] {
        echo_client(srv.addr, i, rounds, f);
        clients.done();
      });
    }
    clients.wait();
    srv.stop();
    f.report();
    BOOST_TEST(srv.accepted.load() == kConns);
  });
}

// The reason the netpoller exists: on one processor, a fiber parked in read
// leaves the worker free; a ping-pong of 1,000 round trips completes while it
// waits, and the read still gets its data afterwards.
BOOST_AUTO_TEST_CASE(blocked_read_does_not_block_the_processor) {
  goro::run(procs(1), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    std::atomic<bool> read_done{false};
    std::string got;
    absl::Status read_st;
    goro::wait_group wg;
    wg.add(1);
    goro::go([&, &s = s] {
      char buf[64];
      absl::StatusOr<std::size_t> r = s.read(bounded(), buf);
      read_st = r.status();
      if (r.ok()) got.assign(buf, *r);
      read_done.store(true);
      wg.done();
    });
    goro::yield();  // let the reader park
    auto ping = goro::make_chan<int>();
    auto pong = goro::make_chan<int>();
    goro::go([=] {
      for (auto& v : ping) pong.send(v + 1);
    });
    int sum = 0;
    for (int i = 0; i < 1000; ++i) {
      ping.send(i);
      sum += *pong.recv() - i;
    }
    ping.close();
    BOOST_TEST(sum == 1000);
    BOOST_TEST(!read_done.load());  // nothing was written yet: still parked
    BOOST_TEST(c.write(std::string_view("wake")).ok());
    wg.wait();
    BOOST_TEST(read_st.ok(), str(read_st));
    BOOST_TEST(got == "wake");
  });
}

// ---- deadlines and cancellation -------------------------------------------------

BOOST_DATA_TEST_CASE(read_deadline_then_socket_still_usable, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    char buf[64];
    {
      auto [ctx, cancel] = goro::with_timeout(kBg, 100ms);
      const auto t0 = sclock::now();
      absl::StatusOr<std::size_t> r = c.read(ctx, buf);
      BOOST_TEST(net::is_timeout(r.status()), str(r.status()));
      BOOST_TEST(absl::IsDeadlineExceeded(r.status()));
      BOOST_TEST(ms_since(t0) >= 90);
      BOOST_TEST(ms_since(t0) < 2000);
      cancel();
    }
    // The timed-out read consumed nothing: a later write is read whole.
    goro::wait_group wg;
    wg.add(1);
    goro::go([&s = s, &wg] {
      goro::sleep_for(20ms);
      (void)s.write(std::string_view("after timeout"));
      wg.done();
    });
    std::string got(13, '\0');
    absl::Status st = c.read_full(bounded(), std::span<char>(got));
    wg.wait();
    BOOST_TEST(st.ok(), str(st));
    BOOST_TEST(got == "after timeout");
    // And with a timeout that does not expire.
    BOOST_TEST(s.write(std::string_view("again")).ok());
    auto [ctx2, cancel2] = goro::with_timeout(kBg, 10s);
    absl::StatusOr<std::size_t> r2 = c.read(ctx2, buf);
    BOOST_REQUIRE(r2.ok());
    BOOST_TEST(std::string(buf, *r2) == "again");
    cancel2();
  });
}

BOOST_DATA_TEST_CASE(read_cancelled_by_another_fiber, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    auto [ctx, cancel] = goro::with_cancel(kBg);
    goro::go([cancel = cancel] {
      goro::sleep_for(50ms);
      cancel();
    });
    char buf[16];
    const auto t0 = sclock::now();
    absl::StatusOr<std::size_t> r = c.read(ctx, buf);
    BOOST_TEST(absl::IsCancelled(r.status()), str(r.status()));
    BOOST_TEST(ms_since(t0) < 2000);
    // A context that has already ended fails the call even with data ready.
    BOOST_TEST(s.write(std::string_view("x")).ok());
    goro::sleep_for(20ms);
    r = c.read(ctx, buf);
    BOOST_TEST(absl::IsCancelled(r.status()), str(r.status()));
    r = c.read(bounded(), buf);
    BOOST_REQUIRE(r.ok());
    BOOST_TEST(*r == 1u);
  });
}

BOOST_DATA_TEST_CASE(accept_deadline_and_cancel, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    {
      auto [ctx, cancel] = goro::with_timeout(kBg, 100ms);
      const auto t0 = sclock::now();
      absl::StatusOr<net::conn> c = ln.accept(ctx);
      BOOST_TEST(net::is_timeout(c.status()), str(c.status()));
      BOOST_TEST(ms_since(t0) >= 90);
      BOOST_TEST(ms_since(t0) < 2000);
    }
    {
      auto [ctx, cancel] = goro::with_cancel(kBg);
      goro::after_func(50ms, [cancel = cancel] { cancel(); });
      const auto t0 = sclock::now();
      absl::StatusOr<net::conn> c = ln.accept(ctx);
      BOOST_TEST(absl::IsCancelled(c.status()), str(c.status()));
      BOOST_TEST(ms_since(t0) < 2000);
    }
    // Still accepting.
    auto [c, s] = tcp_pair(ln);
    BOOST_TEST(c.write(std::string_view("ok")).ok());
    char buf[2];
    BOOST_TEST(s.read_full(bounded(), buf).ok());
  });
}

// A listener that never accepts, with a backlog of 1: once its accept queue
// is full the kernel drops further SYNs, so the next dial hangs in SYN_SENT
// until its context ends.
BOOST_AUTO_TEST_CASE(dial_deadline_and_cancel) {
  goro::run(procs(2), [] {
    net::listen_options o;
    o.backlog = 1;
    net::listener ln = must_listen("127.0.0.1:0", o);
    const net::address to = *ln.local_address();
    std::vector<net::conn> held;
    absl::Status st;
    double took = 0;
    for (int i = 0; i < 16 && st.ok(); ++i) {
      auto [ctx, cancel] = goro::with_timeout(kBg, 300ms);
      const auto t0 = sclock::now();
      absl::StatusOr<net::conn> c = net::dial(ctx, to);
      took = ms_since(t0);
      if (c.ok()) {
        held.push_back(std::move(*c));
      } else {
        st = c.status();
      }
    }
    BOOST_TEST_MESSAGE("dials that completed before the queue filled: " << held.size());
    BOOST_TEST(net::is_timeout(st), str(st));
    BOOST_TEST(took < 2000);
    // The same hang, cancelled.
    auto [ctx, cancel] = goro::with_cancel(kBg);
    goro::after_func(50ms, [cancel = cancel] { cancel(); });
    const auto t0 = sclock::now();
    absl::StatusOr<net::conn> c = net::dial(ctx, to);
    BOOST_TEST(absl::IsCancelled(c.status()), str(c.status()));
    BOOST_TEST(ms_since(t0) < 2000);
    // dial_tcp takes the context too.
    auto [ctx2, cancel2] = goro::with_timeout(kBg, 100ms);
    c = net::dial_tcp(ctx2, to.to_string());
    BOOST_TEST(net::is_timeout(c.status()), str(c.status()));
    cancel2();

    // A Unix listener with a full backlog refuses connect with EAGAIN; dial
    // keeps trying until its context ends, and succeeds once there is room.
    temp_dir dir;
    const std::string path = dir.path + "/full.sock";
    absl::StatusOr<net::listener> ul = net::listen_unix(path, o);
    BOOST_REQUIRE(ul.ok());
    absl::Status ust;
    for (int i = 0; i < 16 && ust.ok(); ++i) {
      auto [uctx, ucancel] = goro::with_timeout(kBg, 100ms);
      const auto u0 = sclock::now();
      absl::StatusOr<net::conn> uc = net::dial_unix(uctx, path);
      took = ms_since(u0);
      if (uc.ok()) {
        held.push_back(std::move(*uc));
      } else {
        ust = uc.status();
      }
    }
    BOOST_TEST(net::is_timeout(ust), str(ust));
    BOOST_TEST(took < 2000);
    goro::wait_group wg;
    wg.add(1);
    absl::Status late;
    goro::go([&] {
      absl::StatusOr<net::conn> uc = net::dial_unix(bounded(), path);
      late = uc.status();
      wg.done();
    });
    goro::sleep_for(20ms);
    absl::StatusOr<net::conn> accepted = ul->accept();  // makes room
    BOOST_TEST(accepted.ok());
    wg.wait();
    BOOST_TEST(late.ok(), str(late));
  });
}

// A peer that never reads: the write fills both socket buffers and waits.
BOOST_DATA_TEST_CASE(write_deadline_and_cancel, bdata::make({1, 2}), n) {
  const std::string& big = big_buffer();
  goro::run(procs(n), [&] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    {
      auto [ctx, cancel] = goro::with_timeout(kBg, 200ms);
      const auto t0 = sclock::now();
      absl::Status st = c.write(ctx, bytes(big));
      BOOST_TEST(net::is_timeout(st), str(st));
      BOOST_TEST(ms_since(t0) >= 190);
      BOOST_TEST(ms_since(t0) < 2000);
    }
    {
      auto [ctx, cancel] = goro::with_cancel(kBg);
      goro::after_func(50ms, [cancel = cancel] { cancel(); });
      const auto t0 = sclock::now();
      absl::Status st = c.write(ctx, bytes(big));
      BOOST_TEST(absl::IsCancelled(st), str(st));
      BOOST_TEST(ms_since(t0) < 2000);
    }
    // The socket is still usable: the peer's data still arrives.
    BOOST_TEST(s.write(std::string_view("still here")).ok());
    std::string got(10, '\0');
    BOOST_TEST(c.read_full(bounded(), std::span<char>(got)).ok());
    BOOST_TEST(got == "still here");
  });
}

// ---- end of stream, half-close, reset ----------------------------------------------

BOOST_DATA_TEST_CASE(peer_close_reads_eof, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    {
      // The peer closes while we are parked in read.
      auto [c, s] = tcp_pair(ln);
      goro::wait_group wg;
      wg.add(1);
      goro::go([&s = s, &wg] {
        goro::sleep_for(20ms);
        (void)s.close();
        wg.done();
      });
      char buf[16];
      absl::StatusOr<std::size_t> r = c.read(bounded(), buf);
      BOOST_TEST(net::is_eof(r.status()), str(r.status()));
      BOOST_TEST(r.status().message() == "EOF");
      r = c.read(bounded(), buf);  // and stays at EOF
      BOOST_TEST(net::is_eof(r.status()), str(r.status()));
      wg.wait();
    }
    {
      // Data, then close, both before we read: the data, then EOF.
      auto [c, s] = tcp_pair(ln);
      BOOST_TEST(s.write(std::string_view("last words")).ok());
      BOOST_TEST(s.close().ok());
      goro::sleep_for(20ms);
      char buf[64];
      absl::StatusOr<std::size_t> r = c.read(bounded(), buf);
      BOOST_REQUIRE(r.ok());
      BOOST_TEST(std::string(buf, *r) == "last words");
      r = c.read(bounded(), buf);
      BOOST_TEST(net::is_eof(r.status()), str(r.status()));
    }
    {
      // Data and close while we are parked: the data, then EOF (the close
      // may come in the same readiness event as the data).
      auto [c, s] = tcp_pair(ln);
      goro::wait_group wg;
      wg.add(1);
      goro::go([&s = s, &wg] {
        goro::sleep_for(20ms);
        (void)s.write(std::string_view("bye"));
        (void)s.close();
        wg.done();
      });
      char buf[64];
      auto [ctx, cancel] = goro::with_timeout(kBg, 5s);
      absl::StatusOr<std::size_t> r = c.read(ctx, buf);
      BOOST_REQUIRE_MESSAGE(r.ok(), str(r.status()));
      std::string got(buf, *r);
      while (got.size() < 3) {  // the data may arrive in pieces
        r = c.read(ctx, buf);
        BOOST_REQUIRE_MESSAGE(r.ok(), str(r.status()));
        got.append(buf, *r);
      }
      BOOST_TEST(got == "bye");
      r = c.read(ctx, buf);
      BOOST_TEST(net::is_eof(r.status()), "expected EOF, got " << str(r.status()));
      wg.wait();
    }
    {
      // read_full: "unexpected EOF" after part of the buffer, "EOF" before.
      auto [c, s] = tcp_pair(ln);
      BOOST_TEST(s.write(std::string_view("abc")).ok());
      BOOST_TEST(s.close().ok());
      char buf[10];
      absl::Status st = c.read_full(bounded(), buf);
      BOOST_TEST(net::is_eof(st), str(st));
      BOOST_TEST(st.message() == "unexpected EOF");
      st = c.read_full(bounded(), buf);
      BOOST_TEST(net::is_eof(st), str(st));
      BOOST_TEST(st.message() == "EOF");
    }
  });
}

// The same data-then-close race, many times: each round the peer writes a
// message and closes at once while the reader is parked.
BOOST_DATA_TEST_CASE(message_then_close_while_parked_many_times, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    int bad = 0, rounds = 0;
    std::string first_bad;
    // Stops at the third failure: each costs a 2 s timeout.
    for (int i = 0; i < 200 && bad < 3; ++i, ++rounds) {
      auto [c, s] = tcp_pair(ln);
      goro::wait_group wg;
      wg.add(1);
      goro::go([&s = s, &wg] {
        goro::yield();
        (void)s.write(std::string_view("0123456789"));
        (void)s.close();
        wg.done();
      });
      auto [ctx, cancel] = goro::with_timeout(kBg, 2s);
      std::string got;
      char buf[4096];
      absl::Status end;
      for (;;) {
        absl::StatusOr<std::size_t> r = c.read(ctx, buf);
        if (!r.ok()) {
          end = r.status();
          break;
        }
        got.append(buf, *r);
      }
      wg.wait();
      if (got != "0123456789" || !net::is_eof(end)) {
        if (bad++ == 0)
          first_bad = "round " + std::to_string(i) + ": got \"" + got + "\", " + str(end);
      }
    }
    BOOST_TEST(bad == 0, bad << " of " << rounds << " rounds failed; first: " << first_bad);
  });
}

BOOST_DATA_TEST_CASE(half_close, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    failures f;
    goro::wait_group wg;
    wg.add(1);
    goro::go([&, &s = s] {
      // The server reads the whole request up to EOF, then answers.
      std::string req;
      char buf[7];
      const goro::context ctx = bounded();
      for (;;) {
        absl::StatusOr<std::size_t> r = s.read(ctx, buf);
        if (!r.ok()) {
          if (!net::is_eof(r.status())) f.add("server read: " + str(r.status()));
          break;
        }
        req.append(buf, *r);
      }
      if (req != "the whole request") f.add("server got \"" + req + "\"");
      f.check(s.write(std::string_view("response to " + req)), "server write");
      f.check(s.close(), "server close");
      wg.done();
    });
    BOOST_TEST(c.write(std::string_view("the whole ")).ok());
    BOOST_TEST(c.write(std::string_view("request")).ok());
    BOOST_TEST(c.close_write().ok());
    // Writing after our half-close fails; reading still works.
    BOOST_TEST(!c.write(std::string_view("more")).ok());
    std::string resp;
    char buf[5];
    absl::Status end;
    const goro::context ctx = bounded();
    for (;;) {
      absl::StatusOr<std::size_t> r = c.read(ctx, buf);
      if (!r.ok()) {
        end = r.status();
        break;
      }
      resp.append(buf, *r);
    }
    wg.wait();
    f.report();
    BOOST_TEST(resp == "response to the whole request");
    BOOST_TEST(net::is_eof(end), str(end));
  });
}

// Urgent data stops a read at its mark with more data still queued behind
// it: that short read must not count as "the queue is empty" (reads then
// wait for a new edge first, and none would come). The reader is parked
// when a plain thread sends all of it at once, so the one wake-up it gets
// is all the readiness there will be; a read that waited for more would
// run into the bound. TCP, and Unix stream sockets where the kernel has
// MSG_OOB for them (5.15+).
void read_stopped_at_an_urgent_mark_continues_on(net::listener& ln) {
  auto [c, s] = tcp_pair(ln);
  const int fd = s.native_handle();
  std::atomic<int> sent{0};
  std::atomic<bool> oob_refused{false};
  std::thread peer([&] {
    std::this_thread::sleep_for(50ms);  // the reader is parked by now
    sent += ::send(fd, "abc", 3, 0) == 3 ? 1 : 0;
    if (::send(fd, "X", 1, MSG_OOB) == 1) {
      ++sent;
    } else {
      oob_refused = errno == EOPNOTSUPP;
    }
    sent += ::send(fd, "def", 3, 0) == 3 ? 1 : 0;
  });
  std::string got;
  char buf[64];
  const goro::context ctx = bounded(3s);
  while (got.size() < 6) {
    absl::StatusOr<std::size_t> r = c.read(ctx, buf);
    if (!r.ok()) {
      BOOST_ERROR(str(r.status()) << " after \"" << got << "\"");
      break;
    }
    got.append(buf, *r);
  }
  peer.join();
  BOOST_TEST(sent.load() == (oob_refused.load() ? 2 : 3));
  // The urgent byte is out of band (no SO_OOBINLINE): the stream is the rest.
  BOOST_TEST(got == "abcdef");
}

BOOST_DATA_TEST_CASE(read_stopped_at_an_urgent_mark_continues, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    read_stopped_at_an_urgent_mark_continues_on(ln);
  });
}

BOOST_DATA_TEST_CASE(unix_read_stopped_at_an_urgent_mark_continues, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    temp_dir dir;
    absl::StatusOr<net::listener> ln = net::listen_unix(dir.path + "/oob.sock");
    BOOST_REQUIRE_MESSAGE(ln.ok(), str(ln.status()));
    read_stopped_at_an_urgent_mark_continues_on(*ln);
  });
}

BOOST_DATA_TEST_CASE(write_after_peer_closed_is_reset, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    BOOST_TEST(s.close().ok());
    // The first writes are buffered; the peer answers them with a reset, and
    // a later write reports it.
    const std::string chunk(4096, 'r');
    absl::Status st;
    int writes = 0;
    for (; writes < 10000 && st.ok(); ++writes) {
      st = c.write(bytes(chunk));
      if (st.ok()) goro::sleep_for(1ms);
    }
    BOOST_TEST(net::is_reset(st), str(st) << " after " << writes << " writes");
  });
}

BOOST_AUTO_TEST_CASE(dial_closed_port_is_refused) {
  goro::run(procs(2), [] {
    net::address to;
    {
      net::listener ln = must_listen("127.0.0.1:0");
      to = *ln.local_address();
      BOOST_TEST(ln.close().ok());
    }
    absl::StatusOr<net::conn> c = net::dial(kBg, to);
    BOOST_TEST(net::is_refused(c.status()), str(c.status()));
    c = net::dial_tcp(to.to_string());
    BOOST_TEST(net::is_refused(c.status()), str(c.status()));
  });
}

// ---- close ---------------------------------------------------------------------------

BOOST_DATA_TEST_CASE(close_wakes_blocked_read_and_accept, bdata::make({1, 2}), n) {
  const std::string& big = big_buffer();
  goro::run(procs(n), [&] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    absl::Status read_st, write_st, accept_st;
    goro::wait_group wg;
    wg.add(3);
    goro::go([&, &c = c] {
      char buf[16];
      read_st = c.read(bounded(), buf).status();
      wg.done();
    });
    // A writer blocked on the same conn (the peer never reads).
    goro::go([&, &c = c] {
      write_st = c.write(bytes(big));
      wg.done();
    });
    goro::go([&] {
      accept_st = ln.accept().status();
      wg.done();
    });
    goro::sleep_for(50ms);  // let all three park
    const auto t0 = sclock::now();
    BOOST_TEST(c.close().ok());
    BOOST_TEST(ln.close().ok());
    wg.wait();
    BOOST_TEST(ms_since(t0) < 2000);
    BOOST_TEST(net::is_closed(read_st), str(read_st));
    BOOST_TEST(net::is_closed(write_st), str(write_st));
    BOOST_TEST(net::is_closed(accept_st), str(accept_st));
    // The peer sees the end of the stream (or a reset: unread data was dropped).
    std::vector<char> sink(1 << 16);
    const goro::context ctx = bounded();
    absl::Status peer;
    while (peer.ok()) peer = s.read(ctx, sink).status();
    BOOST_TEST((net::is_eof(peer) || net::is_reset(peer)), str(peer));
  });
}

BOOST_AUTO_TEST_CASE(double_close_and_use_after_close) {
  goro::run(procs(1), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);
    BOOST_TEST(c.close().ok());
    absl::Status st = c.close();
    BOOST_TEST(absl::IsFailedPrecondition(st), str(st));
    BOOST_TEST(net::is_closed(st));
    char buf[4];
    BOOST_TEST(net::is_closed(c.read(buf).status()));
    BOOST_TEST(net::is_closed(c.write(std::string_view("x"))));
    BOOST_TEST(net::is_closed(c.close_write()));
    BOOST_TEST(net::is_closed(c.local_address().status()));
    BOOST_TEST(s.close().ok());
    BOOST_TEST(net::is_closed(s.close()));

    BOOST_TEST(ln.close().ok());
    BOOST_TEST(net::is_closed(ln.close()));
    BOOST_TEST(net::is_closed(ln.accept().status()));

    absl::StatusOr<net::udp_socket> u = net::listen_udp("127.0.0.1:0");
    BOOST_REQUIRE(u.ok());
    BOOST_TEST(u->close().ok());
    BOOST_TEST(net::is_closed(u->close()));
    BOOST_TEST(net::is_closed(u->recv_from(buf).status()));

    // Objects that own nothing.
    net::conn none;
    BOOST_TEST(!none.valid());
    BOOST_TEST(none.native_handle() == -1);
    BOOST_TEST(net::is_closed(none.read(buf).status()));
    BOOST_TEST(net::is_closed(none.write(std::string_view("x"))));
    BOOST_TEST(net::is_closed(none.close()));
    net::listener no_ln;
    BOOST_TEST(net::is_closed(no_ln.accept().status()));
    BOOST_TEST(net::is_closed(no_ln.close()));
    net::udp_socket no_u;
    BOOST_TEST(net::is_closed(no_u.close()));

    // A moved-from conn owns nothing; the moved-to one works.
    net::listener ln2 = must_listen("127.0.0.1:0");
    auto [c2, s2] = tcp_pair(ln2);
    net::conn moved = std::move(c2);
    BOOST_TEST(!c2.valid());
    BOOST_TEST(net::is_closed(c2.read(buf).status()));
    BOOST_TEST(moved.write(std::string_view("mv")).ok());
    BOOST_TEST(s2.read_full(bounded(), std::span<char>(buf, 2)).ok());
    // An empty read returns 0 at once.
    absl::StatusOr<std::size_t> r = s2.read(std::span<char>(buf, 0));
    BOOST_TEST((r.ok() && *r == 0u));
  });
}

// ---- back-pressure -------------------------------------------------------------------

// 64 MiB to a reader that sleeps between reads: the writer parks in write
// (another fiber keeps counting meanwhile, even on one processor) and every
// byte arrives in order.
BOOST_DATA_TEST_CASE(large_write_with_back_pressure, bdata::make({1, 2}), n) {
  // Made before the runtime starts: filling 64 MiB would hold a worker.
  const std::size_t size = (std::size_t{64} << 20) / static_cast<std::size_t>(kSlow);
  std::vector<char> data(size);
  std::uint64_t want_sum = 0;
  for (std::size_t i = 0; i < size; ++i) {
    data[i] = static_cast<char>((i * 131 + (i >> 13)) & 0xff);
    want_sum = want_sum * 31 + static_cast<unsigned char>(data[i]);
  }
  goro::run(procs(n), [&] {
    net::listener ln = must_listen("127.0.0.1:0");
    auto [c, s] = tcp_pair(ln);

    std::atomic<bool> stop{false};
    std::atomic<long> ticks{0};
    goro::wait_group wg;
    wg.add(2);
    goro::go([&] {
      while (!stop.load()) {
        ticks.fetch_add(1);
        goro::sleep_for(1ms);
      }
      wg.done();
    });

    std::size_t got = 0, mismatches = 0, reads = 0;
    std::uint64_t sum = 0;
    absl::Status read_end;
    goro::go([&, &s = s] {
      std::vector<char> buf(256 << 10);
      const goro::context ctx = bounded(60s);
      for (;;) {
        absl::StatusOr<std::size_t> r = s.read(ctx, buf);
        if (!r.ok()) {
          read_end = r.status();
          break;
        }
        ++reads;
        for (std::size_t i = 0; i < *r; ++i) {
          const std::size_t at = got + i;
          if (buf[i] != static_cast<char>((at * 131 + (at >> 13)) & 0xff)) ++mismatches;
          sum = sum * 31 + static_cast<unsigned char>(buf[i]);
        }
        got += *r;
        goro::sleep_for(1ms);  // slow consumer
      }
      wg.done();
    });

    const long ticks_before = ticks.load();
    const auto t0 = sclock::now();
    absl::Status st = c.write(data);
    const double took = ms_since(t0);
    const long ticks_during = ticks.load() - ticks_before;
    BOOST_TEST(st.ok(), str(st));
    BOOST_TEST(c.close_write().ok());
    stop.store(true);
    wg.wait();
    BOOST_TEST_MESSAGE("wrote " << size << " bytes in " << took << " ms, " << reads
                                << " reads; the counter ticked " << ticks_during << " times");
    BOOST_TEST(got == size);
    BOOST_TEST(mismatches == 0u);
    BOOST_TEST(sum == want_sum);
    BOOST_TEST(net::is_eof(read_end), str(read_end));
    BOOST_TEST(reads > 1u);
    BOOST_TEST(ticks_during >= 5);  // the writer parked; it did not hold the worker
  });
}

// ---- UDP ---------------------------------------------------------------------------

namespace {

void udp_round_trip(std::string_view at) {
  absl::StatusOr<net::udp_socket> a = net::listen_udp(at);
  absl::StatusOr<net::udp_socket> b = net::listen_udp(at);
  BOOST_REQUIRE_MESSAGE(a.ok(), str(a.status()));
  BOOST_REQUIRE_MESSAGE(b.ok(), str(b.status()));
  const net::address aa = *a->local_address();
  const net::address ba = *b->local_address();
  BOOST_TEST(aa.port() != 0);
  BOOST_TEST(aa.port() != ba.port());

  // b is waiting when the datagram is sent.
  absl::StatusOr<net::datagram> got;
  std::string text;
  goro::wait_group wg;
  wg.add(1);
  goro::go([&] {
    char buf[64];
    got = b->recv_from(buf);
    if (got.ok()) text.assign(buf, got->size);
    wg.done();
  });
  goro::sleep_for(10ms);
  BOOST_TEST(a->send_to(bytes("ping"), ba).ok());
  wg.wait();
  BOOST_REQUIRE_MESSAGE(got.ok(), str(got.status()));
  BOOST_TEST(text == "ping");
  BOOST_TEST(got->size == 4u);
  BOOST_TEST((got->from == aa), got->from.to_string() << " != " << aa.to_string());

  // And back, to the address it came from.
  BOOST_TEST(b->send_to(bytes("pong!"), got->from).ok());
  char buf[64];
  auto [ctx, cancel] = goro::with_timeout(kBg, 5s);
  absl::StatusOr<net::datagram> back = a->recv_from(ctx, buf);
  BOOST_REQUIRE_MESSAGE(back.ok(), str(back.status()));
  BOOST_TEST(std::string(buf, back->size) == "pong!");
  BOOST_TEST((back->from == ba));

  // A longer datagram is truncated to the buffer.
  const std::string big(100, 'd');
  BOOST_TEST(a->send_to(bytes(big), ba).ok());
  char small[10];
  absl::StatusOr<net::datagram> t = b->recv_from(ctx, small);
  BOOST_REQUIRE(t.ok());
  BOOST_TEST(t->size == 10u);

  // recv_from with a deadline.
  auto [short_ctx, c2] = goro::with_timeout(kBg, 50ms);
  const auto t0 = sclock::now();
  absl::StatusOr<net::datagram> none = b->recv_from(short_ctx, buf);
  BOOST_TEST(net::is_timeout(none.status()), str(none.status()));
  BOOST_TEST(ms_since(t0) < 2000);
  cancel();
  c2();
}

}  // namespace

BOOST_DATA_TEST_CASE(udp_ipv4, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] { udp_round_trip("127.0.0.1:0"); });
}

BOOST_AUTO_TEST_CASE(udp_ipv6) {
  if (!ipv6_available()) {
    BOOST_TEST_MESSAGE("skipped: IPv6 loopback unavailable");
    return;
  }
  goro::run(procs(2), [] { udp_round_trip("[::1]:0"); });
}

// A dual-stack socket (":0") reports an IPv4 peer as IPv4, not as
// ::ffff:a.b.c.d, and can reply to that address.
BOOST_AUTO_TEST_CASE(udp_dual_stack_reports_and_answers_ipv4_peers) {
  goro::run(procs(2), [] {
    absl::StatusOr<net::udp_socket> any = net::listen_udp(":0");
    absl::StatusOr<net::udp_socket> v4 = net::listen_udp("127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(any.ok(), str(any.status()));
    BOOST_REQUIRE_MESSAGE(v4.ok(), str(v4.status()));
    const net::address v4a = *v4->local_address();
    const net::address to = *net::address::ip("127.0.0.1", any->local_address()->port());
    BOOST_TEST(v4->send_to(bytes("hi"), to).ok());
    auto [ctx, cancel] = goro::with_timeout(kBg, 5s);
    char buf[16];
    absl::StatusOr<net::datagram> got = any->recv_from(ctx, buf);
    BOOST_REQUIRE_MESSAGE(got.ok(), str(got.status()));
    BOOST_TEST(got->from.is_ipv4(), got->from.to_string());
    BOOST_TEST((got->from == v4a), got->from.to_string() << " != " << v4a.to_string());
    BOOST_TEST(any->send_to(bytes("ho"), got->from).ok());
    absl::StatusOr<net::datagram> back = v4->recv_from(ctx, buf);
    BOOST_REQUIRE_MESSAGE(back.ok(), str(back.status()));
    BOOST_TEST(std::string(buf, back->size) == "ho");
    cancel();
  });
}

// ---- IPv6 and Unix streams -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(ipv6_loopback_echo) {
  if (!ipv6_available()) {
    BOOST_TEST_MESSAGE("skipped: IPv6 loopback unavailable");
    return;
  }
  goro::run(procs(2), [] {
    echo_server srv("[::1]:0");
    BOOST_TEST(srv.addr.is_ipv6());
    BOOST_TEST(srv.addr.host() == "::1");
    BOOST_TEST(srv.addr.to_string() == "[::1]:" + std::to_string(srv.addr.port()));
    failures f;
    goro::wait_group wg;
    wg.add(20);
    for (int i = 0; i < 20; ++i) {
      goro::go([&, i] {
        echo_client(srv.addr, i, 5, f);
        wg.done();
      });
    }
    wg.wait();
    // dial_tcp with the bracketed form.
    absl::StatusOr<net::conn> c = net::dial_tcp(srv.addr.to_string());
    BOOST_REQUIRE_MESSAGE(c.ok(), str(c.status()));
    BOOST_TEST(c->remote_address()->is_ipv6());
    BOOST_TEST(c->close().ok());
    srv.stop();
    f.report();
  });
}

BOOST_DATA_TEST_CASE(unix_socket_echo, bdata::make({1, 2}), n) {
  goro::run(procs(n), [] {
    temp_dir dir;
    const std::string path = dir.path + "/echo.sock";
    absl::StatusOr<net::listener> l = net::listen_unix(path);
    BOOST_REQUIRE_MESSAGE(l.ok(), str(l.status()));
    BOOST_TEST(file_exists(path));
    absl::StatusOr<net::address> la = l->local_address();
    BOOST_REQUIRE(la.ok());
    BOOST_TEST(la->is_unix());
    BOOST_TEST(la->host() == path);
    BOOST_TEST(la->port() == 0);

    // Go's rule: an existing socket file is an error, not silently replaced.
    absl::StatusOr<net::listener> again = net::listen_unix(path);
    BOOST_TEST(absl::IsAlreadyExists(again.status()), str(again.status()));
    const std::string plain = dir.path + "/plain-file";
    std::FILE* fp = std::fopen(plain.c_str(), "w");
    BOOST_REQUIRE(fp != nullptr);
    std::fclose(fp);
    absl::StatusOr<net::listener> on_file = net::listen_unix(plain);
    BOOST_TEST(absl::IsAlreadyExists(on_file.status()), str(on_file.status()));
    BOOST_TEST(file_exists(plain));  // not removed by the failed listen

    goro::wait_group conns, acceptor;
    acceptor.add(1);
    goro::go([&] {
      serve_echo(*l, conns);
      acceptor.done();
    });
    failures f;
    goro::wait_group clients;
    clients.add(50);
    for (int i = 0; i < 50; ++i) {
      goro::go([&, i] {
        absl::StatusOr<net::conn> c = net::dial_unix(kBg, path);
        if (!c.ok()) {
          f.add("dial_unix: " + str(c.status()));
        } else {
          for (int m = 0; m < 5; ++m) {
            const std::string p = payload(i, m);
            f.check(c->write(bytes(p)), "write");
            std::string got(p.size(), '\0');
            f.check(c->read_full(bounded(), std::span<char>(got)), "read_full");
            if (got != p) f.add("unix echo differs");
          }
        }
        clients.done();
      });
    }
    clients.wait();
    BOOST_TEST(l->close().ok());
    acceptor.wait();
    conns.wait();
    f.report();
    BOOST_TEST(!file_exists(path));  // close() removed the socket file

    // The destructor removes it too; dialing a missing path fails.
    {
      absl::StatusOr<net::listener> l2 = net::listen_unix(path);
      BOOST_REQUIRE(l2.ok());
      BOOST_TEST(file_exists(path));
    }
    BOOST_TEST(!file_exists(path));
    absl::StatusOr<net::conn> c = net::dial_unix(kBg, path);
    BOOST_TEST(!c.ok());
  });
}

// ---- addresses -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(address_parse_accepts) {
  absl::StatusOr<net::address> a = net::address::parse("1.2.3.4:80");
  BOOST_REQUIRE(a.ok());
  BOOST_TEST(a->is_ipv4());
  BOOST_TEST(a->host() == "1.2.3.4");
  BOOST_TEST(a->port() == 80);
  BOOST_TEST(a->to_string() == "1.2.3.4:80");

  a = net::address::parse("[::1]:80");
  BOOST_REQUIRE(a.ok());
  BOOST_TEST(a->is_ipv6());
  BOOST_TEST(a->host() == "::1");
  BOOST_TEST(a->port() == 80);
  BOOST_TEST(a->to_string() == "[::1]:80");

  a = net::address::parse(":80");  // any address
  BOOST_REQUIRE_MESSAGE(a.ok(), str(a.status()));
  BOOST_TEST((a->is_ipv4() || a->is_ipv6()));
  BOOST_TEST(a->port() == 80);
  BOOST_TEST((a->host() == "::" || a->host() == "0.0.0.0"), a->host());

  a = net::address::parse("0.0.0.0:0");
  BOOST_REQUIRE(a.ok());
  BOOST_TEST(a->port() == 0);
  a = net::address::parse("127.0.0.1:65535");
  BOOST_REQUIRE(a.ok());
  BOOST_TEST(a->port() == 65535);

  // Round trips through to_string.
  for (const char* s : {"1.2.3.4:80", "[::1]:80", "127.0.0.1:65535", "[2001:db8::1]:8080",
                        "0.0.0.0:0", "[::]:443"}) {
    absl::StatusOr<net::address> x = net::address::parse(s);
    BOOST_REQUIRE_MESSAGE(x.ok(), s);
    BOOST_TEST(x->to_string() == s);
    absl::StatusOr<net::address> y = net::address::parse(x->to_string());
    BOOST_REQUIRE(y.ok());
    BOOST_TEST((*x == *y), s);
  }
  // ip() and from_sockaddr() agree with parse().
  absl::StatusOr<net::address> ip = net::address::ip("::1", 80);
  BOOST_REQUIRE(ip.ok());
  BOOST_TEST((*ip == *net::address::parse("[::1]:80")));
  const net::address copy = net::address::from_sockaddr(ip->sa(), ip->size());
  BOOST_TEST((copy == *ip));
  BOOST_TEST(!(copy == *net::address::parse("[::1]:81")));

  absl::StatusOr<net::address> u = net::address::unix_path("/tmp/x.sock");
  BOOST_REQUIRE(u.ok());
  BOOST_TEST(u->is_unix());
  BOOST_TEST(u->to_string() == "/tmp/x.sock");

  net::address empty;
  BOOST_TEST(empty.family() == AF_UNSPEC);
}

BOOST_AUTO_TEST_CASE(address_parse_rejects) {
  for (const char* s : {"bad", "1.2.3.4:99999", "[::1", "", "1.2.3.4", "1.2.3.4:", "::1:80",
                        "[::1]80", "1.2.3.4:-1", "1.2.3.4:8a", "localhost:80", "1.2.3.256:80",
                        "[1.2.3.4:80", "1.2.3.4:65536"}) {
    absl::StatusOr<net::address> a = net::address::parse(s);
    BOOST_TEST(absl::IsInvalidArgument(a.status()),
               "\"" << s << "\" gave " << (a.ok() ? a->to_string() : str(a.status())));
  }
  BOOST_TEST(absl::IsInvalidArgument(net::address::ip("nope", 1).status()));
  BOOST_TEST(absl::IsInvalidArgument(net::address::unix_path("").status()));
  BOOST_TEST(absl::IsInvalidArgument(net::address::unix_path(std::string(200, 'p')).status()));
  BOOST_TEST(absl::IsInvalidArgument(net::listen_tcp("bad").status()));
  BOOST_TEST(absl::IsInvalidArgument(net::listen_udp("[::1").status()));
}

BOOST_AUTO_TEST_CASE(resolve_localhost) {
  goro::run(procs(2), [] {
    absl::StatusOr<std::vector<net::address>> r = net::resolve(kBg, "localhost", "80");
    BOOST_REQUIRE_MESSAGE(r.ok(), str(r.status()));
    BOOST_REQUIRE(!r->empty());
    bool saw_v6 = false;
    for (const net::address& a : *r) {
      BOOST_TEST(a.port() == 80);
      BOOST_TEST((a.host().rfind("127.", 0) == 0 || a.host() == "::1"), a.to_string());
      if (a.is_ipv4()) BOOST_TEST(!saw_v6, "IPv4 results come first");
      saw_v6 = saw_v6 || a.is_ipv6();
    }
    // A literal needs no resolver.
    r = net::resolve(kBg, "127.0.0.1", "8080");
    BOOST_REQUIRE(r.ok());
    BOOST_REQUIRE(r->size() == 1u);
    BOOST_TEST((r->front() == *net::address::parse("127.0.0.1:8080")));
    // An ended context fails the call.
    auto [ctx, cancel] = goro::with_cancel(kBg);
    cancel();
    BOOST_TEST(absl::IsCancelled(net::resolve(ctx, "localhost", "80").status()));
    // dial_tcp resolves names.
    net::listener ln = must_listen("127.0.0.1:0");
    absl::StatusOr<net::conn> c =
        net::dial_tcp("localhost:" + std::to_string(ln.local_address()->port()));
    BOOST_TEST(c.ok(), str(c.status()));
  });
}

// ---- descriptor leaks ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(no_fd_leaks) {
  // The netpoller's own descriptors are created once per process: make sure
  // they exist before counting.
  goro::run(procs(1), [] { (void)net::listen_udp("127.0.0.1:0"); });
  const int before = count_fds();
  BOOST_REQUIRE(before > 0);
  goro::run(procs(2), [] {
    const int in_run = count_fds();
    {
      echo_server srv("127.0.0.1:0");
      failures f;
      goro::wait_group wg;
      constexpr int kConns = 500;
      wg.add(kConns);
      for (int i = 0; i < kConns; ++i) {
        goro::go([&, i] {
          absl::StatusOr<net::conn> c = net::dial(kBg, srv.addr);
          if (!c.ok()) {
            f.add("dial: " + str(c.status()));
          } else {
            const std::string p = payload(i, 0);
            f.check(c->write(bytes(p)), "write");
            std::string got(p.size(), '\0');
            f.check(c->read_full(bounded(), std::span<char>(got)), "read_full");
            if (i % 3 == 0) f.check(c->close(), "close");  // others: the destructor
            if (i % 3 == 1) {
              // A timed-out read, then the destructor.
              auto [ctx, cancel] = goro::with_timeout(kBg, 1ms);
              char b[1];
              (void)c->read(ctx, b);
            }
          }
          wg.done();
        });
      }
      wg.wait();
      srv.stop();
      f.report();

      // Failed dials and listens.
      net::address closed_port;
      {
        net::listener ln = must_listen("127.0.0.1:0");
        closed_port = *ln.local_address();
      }
      for (int i = 0; i < 50; ++i) {
        BOOST_TEST(net::is_refused(net::dial(kBg, closed_port).status()));
        BOOST_TEST(!net::dial_unix(kBg, "/nonexistent/goro.sock").ok());
      }
      net::listener taken = must_listen("127.0.0.1:0");
      for (int i = 0; i < 50; ++i) {
        BOOST_TEST(!net::listen_tcp(taken.local_address()->to_string()).ok());
      }
      // UDP sockets, closed or destroyed.
      for (int i = 0; i < 50; ++i) {
        absl::StatusOr<net::udp_socket> u = net::listen_udp("127.0.0.1:0");
        BOOST_REQUIRE(u.ok());
        if (i % 2 == 0) BOOST_TEST(u->close().ok());
      }
      // Listeners closed while a fiber waits in accept.
      for (int i = 0; i < 20; ++i) {
        net::listener ln = must_listen("127.0.0.1:0");
        goro::wait_group w;
        w.add(1);
        goro::go([&] {
          (void)ln.accept();
          w.done();
        });
        goro::yield();
        BOOST_TEST(ln.close().ok());
        w.wait();
      }
    }
    // The monitor reads /proc for a moment now and then (a worker seen
    // stuck): a leak is a count that stays up, not one that blips.
    BOOST_TEST(goro_test::eventually([&] { return count_fds() == in_run; }, 1s));
  });
  BOOST_TEST(count_fds() == before);
}

// ---- plain OS threads -------------------------------------------------------------------

// A std::thread uses sockets while fibers serve the other side: its calls
// block the thread (poll(2)), not a worker.
BOOST_AUTO_TEST_CASE(plain_thread_client_with_fiber_server) {
  goro::run(procs(2), [] {
    echo_server srv("127.0.0.1:0");
    failures f;
    goro::wait_group done;
    done.add(1);
    std::thread t([&] {
      if (goro::fiber_id() != 0u) f.add("the thread is not a plain thread");
      absl::StatusOr<net::conn> c = net::dial(kBg, srv.addr);
      if (!c.ok()) {
        f.add("thread dial: " + str(c.status()));
      } else {
        for (int m = 0; m < 100; ++m) {
          const std::string p = payload(7, m);
          f.check(c->write(bytes(p)), "thread write");
          std::string got(p.size(), '\0');
          f.check(c->read_full(bounded(), std::span<char>(got)), "thread read_full");
          if (got != p) f.add("thread: echo differs");
        }
        // A read deadline on a plain thread.
        auto [ctx, cancel] = goro::with_timeout(kBg, 100ms);
        char b[4];
        const auto t0 = sclock::now();
        absl::Status st = c->read(ctx, b).status();
        if (!net::is_timeout(st)) f.add("thread read deadline: " + str(st));
        if (ms_since(t0) > 2000) f.add("thread read deadline took too long");
        f.check(c->close_write(), "close_write");
        if (!net::is_eof(c->read(bounded(), b).status())) f.add("thread: no EOF");
      }
      done.done();
    });
    // The main fiber keeps running fibers while the thread works.
    done.wait();
    t.join();
    srv.stop();
    f.report();
  });
}

// The other way round: a thread accepts and echoes, fibers dial.
BOOST_AUTO_TEST_CASE(plain_thread_server_with_fiber_clients) {
  goro::run(procs(2), [] {
    net::listener ln = must_listen("127.0.0.1:0");
    const net::address to = *ln.local_address();
    constexpr int kClients = 5;
    std::thread t([&] {
      std::vector<std::thread> echoers;
      for (int i = 0; i < kClients; ++i) {
        absl::StatusOr<net::conn> c = ln.accept();
        if (!c.ok()) break;
        echoers.emplace_back([c = std::move(*c)]() mutable { echo_conn(c); });
      }
      for (std::thread& e : echoers) e.join();
    });
    failures f;
    goro::wait_group wg;
    wg.add(kClients);
    for (int i = 0; i < kClients; ++i) {
      goro::go([&, i] {
        echo_client(to, i, 20, f);
        wg.done();
      });
    }
    wg.wait();
    // join() would block this worker; wait for the thread's last echoer on a
    // plain thread instead.
    goro::wait_group joined;
    joined.add(1);
    std::thread j([&] {
      t.join();
      joined.done();
    });
    joined.wait();
    j.join();
    f.report();
  });
}

// No runtime at all: two threads talk through goro::net, and close() from a
// third thread wakes a thread blocked in read and in accept.
BOOST_AUTO_TEST_CASE(plain_threads_without_runtime) {
  absl::StatusOr<net::listener> ln = net::listen_tcp("127.0.0.1:0");
  BOOST_REQUIRE_MESSAGE(ln.ok(), str(ln.status()));
  const net::address to = *ln->local_address();
  failures f;
  std::thread server([&] {
    absl::StatusOr<net::conn> c = ln->accept();
    if (!c.ok()) return f.add("accept: " + str(c.status()));
    echo_conn(*c);
  });
  std::thread client([&] { echo_client(to, 3, 100, f); });
  client.join();
  server.join();
  f.report();

  // close() from another thread wakes a blocked read and a blocked accept.
  absl::StatusOr<net::conn> c = net::dial(kBg, to);
  BOOST_REQUIRE(c.ok());
  absl::StatusOr<net::conn> s = ln->accept();
  BOOST_REQUIRE(s.ok());
  absl::Status read_st, accept_st;
  std::thread reader([&] {
    char b[8];
    read_st = c->read(b).status();
  });
  std::thread acceptor([&] { accept_st = ln->accept().status(); });
  std::this_thread::sleep_for(50ms);
  const auto t0 = sclock::now();
  BOOST_TEST(c->close().ok());
  BOOST_TEST(ln->close().ok());
  reader.join();
  acceptor.join();
  BOOST_TEST(ms_since(t0) < 2000);
  BOOST_TEST(net::is_closed(read_st), str(read_st));
  BOOST_TEST(net::is_closed(accept_st), str(accept_st));
  char b[8];
  BOOST_TEST(net::is_eof(s->read(b).status()));
}
