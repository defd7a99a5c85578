// bench/net.cpp — goro::net over loopback. Twin: bench/go/net.
//
//   echo_50x4000   50 connections, each 4,000 round trips of a 32-byte
//                  message to an echo server in the same process (a fiber
//                  per connection on both sides); ns per message, i.e. wall
//                  time / 200,000 round trips. The connections are dialed
//                  before the clock starts.
//
// Both sides reach the netpoller on every message: the server's read finds
// the socket empty and parks until the client's write arrives, and the
// client's read parks until the echo arrives.
#include <goro/goro.hpp>
#include <goro/net.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "bench_util.hpp"

namespace net = goro::net;

namespace {

constexpr std::size_t kMsg = 32;

void die(const char* what, const absl::Status& st) {
  std::fprintf(stderr, "net: %s: %s\n", what, st.ToString().c_str());
  std::exit(1);
}

// The server's side of one connection: echo whatever arrives.
void echo(net::conn c) {
  std::array<char, 512> buf;
  for (;;) {
    absl::StatusOr<std::size_t> n = c.read(buf);
    if (!n.ok()) return;
    if (!c.write(std::span<const char>(buf.data(), *n)).ok()) return;
  }
}

double echo_round(const net::address& to, int conns, int rounds) {
  std::vector<net::conn> cs;
  for (int i = 0; i < conns; ++i) {
    absl::StatusOr<net::conn> c = net::dial(goro::context::background(), to);
    if (!c.ok()) die("dial", c.status());
    cs.push_back(std::move(*c));
  }
  auto start = goro::make_chan<void>();
  goro::wait_group wg;
  wg.add(conns);
  for (int i = 0; i < conns; ++i) {
    goro::go([&, i] {
      net::conn& c = cs[static_cast<std::size_t>(i)];
      std::array<char, kMsg> out{}, in{};
      start.recv();
      for (int r = 0; r < rounds; ++r) {
        out[0] = static_cast<char>(r);
        if (absl::Status st = c.write(out); !st.ok()) die("write", st);
        if (absl::Status st = c.read_full(in); !st.ok()) die("read", st);
      }
      if (in[0] != static_cast<char>(rounds - 1)) die("echo", absl::DataLossError("wrong echo"));
      wg.done();
    });
  }
  const auto t0 = bench::clock::now();
  start.close();
  wg.wait();
  const double s = bench::seconds_since(t0);
  for (net::conn& c : cs) (void)c.close();  // the server's fibers see EOF
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const int conns = static_cast<int>(bench::flag(argc, argv, "-conns", 50));
  const int rounds = static_cast<int>(bench::flag(argc, argv, "-rounds", 4000));
  const int reps = static_cast<int>(bench::flag(argc, argv, "-reps", 5));
  double s = 0;
  goro::run([&] {
    absl::StatusOr<net::listener> ln = net::listen_tcp("127.0.0.1:0");
    if (!ln.ok()) die("listen", ln.status());
    const net::address at = *ln->local_address();
    goro::wait_group acceptor;
    acceptor.add(1);
    goro::go([&] {
      for (;;) {
        absl::StatusOr<net::conn> c = ln->accept();
        if (!c.ok()) break;
        goro::go(echo, std::move(*c));
      }
      acceptor.done();
    });
    s = bench::median_seconds("echo_50x4000", reps, [&] { return echo_round(at, conns, rounds); });
    (void)ln->close();
    acceptor.wait();
  });
  const double msgs = static_cast<double>(conns) * rounds;
  std::printf("# echo_50x4000: %.0f msgs/s\n", msgs / s);
  bench::report("echo_50x4000", s * 1e9 / msgs, "ns/msg");
}
