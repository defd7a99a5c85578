// echo_server — a TCP echo server: Go's classic Listen / Accept /
// `go handle(conn)` loop, one fiber per connection.
//
//   echo_server                     serves on 127.0.0.1:0, runs a built-in
//                                   client (20 connections x 100 messages)
//                                   against itself, prints a summary, exits
//   echo_server --listen HOST:PORT  serves forever (try: nc HOST PORT)
//
// The same server in Go:
//
//   ln, _ := net.Listen("tcp", addr)
//   for {
//     c, err := ln.Accept()
//     if err != nil { return }
//     go func() { defer c.Close(); io.Copy(c, c) }()
//   }
#include <goro/goro.hpp>
#include <goro/net.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace net = goro::net;

namespace {

// Echoes until the client closes its side (or the connection fails).
void handle(net::conn c) {
  std::array<char, 16384> buf;
  for (;;) {
    absl::StatusOr<std::size_t> n = c.read(buf);
    if (!n.ok()) break;  // EOF: the client is done
    if (!c.write(std::span<const char>(buf.data(), *n)).ok()) break;
  }
}

// Accepts until the listener is closed; `conns` counts the live handlers.
void serve(net::listener& ln, goro::wait_group& conns) {
  for (;;) {
    absl::StatusOr<net::conn> c = ln.accept();
    if (!c.ok()) {
      if (!net::is_closed(c.status())) {
        std::fprintf(stderr, "echo_server: accept: %s\n", c.status().ToString().c_str());
      }
      return;
    }
    conns.add(1);
    goro::go([c = std::move(*c), &conns]() mutable {
      handle(std::move(c));
      conns.done();
    });
  }
}

// One self-check client: `msgs` distinct lines, each echo checked exactly.
// Returns the bytes echoed, or -1 after printing what went wrong.
long client(const net::address& to, int id, int msgs) {
  // Every call is bounded, so a broken server fails the check instead of
  // hanging it.
  auto [ctx, cancel] = goro::with_timeout(goro::context::background(), std::chrono::seconds(20));
  absl::StatusOr<net::conn> c = net::dial(ctx, to);
  if (!c.ok()) {
    std::fprintf(stderr, "client %d: dial: %s\n", id, c.status().ToString().c_str());
    return -1;
  }
  long bytes = 0;
  std::string got;
  for (int m = 0; m < msgs; ++m) {
    const std::string line = "client " + std::to_string(id) + " message " + std::to_string(m) +
                             std::string(static_cast<std::size_t>(m % 17), '.') + "\n";
    absl::Status st = c->write(ctx, std::string_view(line));
    if (st.ok()) {
      got.assign(line.size(), '\0');
      st = c->read_full(ctx, std::span<char>(got));
    }
    if (!st.ok() || got != line) {
      std::fprintf(stderr, "client %d: message %d: %s\n", id, m,
                   st.ok() ? "echo differs" : st.ToString().c_str());
      return -1;
    }
    bytes += static_cast<long>(line.size());
  }
  cancel();
  return bytes;
}

int self_check() {
  constexpr int kConns = 20, kMsgs = 100;
  int rc = 0;
  goro::run([&rc] {
    absl::StatusOr<net::listener> ln = net::listen_tcp("127.0.0.1:0");
    if (!ln.ok()) {
      std::fprintf(stderr, "echo_server: %s\n", ln.status().ToString().c_str());
      rc = 1;
      return;
    }
    const net::address at = *ln->local_address();
    goro::wait_group conns, acceptor;
    acceptor.add(1);
    goro::go([&] {
      serve(*ln, conns);
      acceptor.done();
    });

    const auto t0 = std::chrono::steady_clock::now();
    std::atomic<long> bytes{0};
    std::atomic<int> failed{0};
    goro::wait_group clients;
    clients.add(kConns);
    for (int i = 0; i < kConns; ++i) {
      goro::go([&, i] {
        const long b = client(at, i, kMsgs);
        if (b < 0) {
          failed.fetch_add(1);
        } else {
          bytes.fetch_add(b);
        }
        clients.done();
      });
    }
    clients.wait();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    (void)ln->close();  // the acceptor returns
    acceptor.wait();
    conns.wait();  // every handler saw its client's EOF
    std::printf(
        "echo_server: served %s; %d connections x %d messages echoed (%ld bytes) in %.1f ms on %d "
        "processors, %d failed\n",
        at.to_string().c_str(), kConns, kMsgs, bytes.load(), ms, goro::maxprocs(), failed.load());
    rc = failed.load() == 0 ? 0 : 1;
  });
  return rc;
}

int serve_forever(const char* addr) {
  int rc = 0;
  goro::run([&] {
    absl::StatusOr<net::listener> ln = net::listen_tcp(addr);
    if (!ln.ok()) {
      std::fprintf(stderr, "echo_server: %s\n", ln.status().ToString().c_str());
      rc = 1;
      return;
    }
    std::printf("echo_server: listening on %s\n", ln->local_address()->to_string().c_str());
    std::fflush(stdout);
    goro::wait_group conns;
    serve(*ln, conns);
    rc = 1;  // accept failed
  });
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--listen") == 0) return serve_forever(argv[2]);
  if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--listen HOST:PORT]\n", argv[0]);
    return 2;
  }
  return self_check();
}
