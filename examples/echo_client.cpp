// echo_client — talks to an echo server: dial with a timeout, write a line,
// read the echo back, measure the round trip (Go: net.DialTimeout, io.ReadFull).
//
//   echo_client                        starts an in-process echo server on
//                                      ":0", talks to it and exits
//   echo_client --connect HOST:PORT    talks to a running server (e.g.
//                                      `echo_server --listen 127.0.0.1:7000`)
//   ... [-n MESSAGES]                  how many lines to send (default 10)
#include <goro/goro.hpp>
#include <goro/net.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace net = goro::net;
using namespace std::chrono_literals;

namespace {

// The client: every step bounded by one context, as a Go client would use
// a context.WithTimeout for the whole exchange. Returns 0 on success.
int talk(std::string_view host_port, int messages) {
  auto [ctx, cancel] = goro::with_timeout(goro::context::background(), 10s);
  absl::StatusOr<net::conn> c = net::dial_tcp(ctx, host_port);
  if (!c.ok()) {
    std::fprintf(stderr, "echo_client: dial %.*s: %s\n", static_cast<int>(host_port.size()),
                 host_port.data(), c.status().ToString().c_str());
    return 1;
  }
  std::printf("echo_client: connected %s -> %s\n", c->local_address()->to_string().c_str(),
              c->remote_address()->to_string().c_str());
  double total_us = 0;
  for (int i = 0; i < messages; ++i) {
    const std::string line = "hello " + std::to_string(i) + "\n";
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status st = c->write(ctx, std::string_view(line));
    std::string echo(line.size(), '\0');
    if (st.ok()) st = c->read_full(ctx, std::span<char>(echo));
    if (!st.ok()) {
      std::fprintf(stderr, "echo_client: message %d: %s\n", i, st.ToString().c_str());
      return 1;
    }
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    total_us += us;
    if (echo != line) {
      std::fprintf(stderr, "echo_client: message %d: the echo differs\n", i);
      return 1;
    }
    std::printf("  echo: %-12.*s %8.1f us\n", static_cast<int>(echo.size() - 1), echo.data(), us);
  }
  // Half-close: the server sees EOF, closes, and we read EOF too.
  (void)c->close_write();
  char b[1];
  absl::StatusOr<std::size_t> r = c->read(ctx, b);
  if (!net::is_eof(r.status())) {
    std::fprintf(stderr, "echo_client: expected EOF, got %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf("echo_client: %d round trips, %.1f us on average\n", messages,
              messages > 0 ? total_us / messages : 0.0);
  return 0;
}

// A one-connection-at-a-time echo server, for the no-argument mode.
void serve(net::listener& ln) {
  for (;;) {
    absl::StatusOr<net::conn> c = ln.accept();
    if (!c.ok()) return;  // closed
    goro::go([c = std::move(*c)]() mutable {
      std::array<char, 4096> buf;
      for (;;) {
        absl::StatusOr<std::size_t> n = c.read(buf);
        if (!n.ok() || !c.write(std::span<const char>(buf.data(), *n)).ok()) return;
      }
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* connect = nullptr;
  int messages = 10;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
      connect = argv[++i];
    } else if (std::strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
      messages = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--connect HOST:PORT] [-n MESSAGES]\n", argv[0]);
      return 2;
    }
  }
  int rc = 0;
  goro::run([&] {
    if (connect != nullptr) {
      rc = talk(connect, messages);
      return;
    }
    // ":0": every interface, a free port; ":PORT" dials the local system,
    // as in Go.
    absl::StatusOr<net::listener> ln = net::listen_tcp(":0");
    if (!ln.ok()) {
      std::fprintf(stderr, "echo_client: listen: %s\n", ln.status().ToString().c_str());
      rc = 1;
      return;
    }
    const std::string port = std::to_string(ln->local_address()->port());
    goro::wait_group server;
    server.add(1);
    goro::go([&] {
      serve(*ln);
      server.done();
    });
    rc = talk(":" + port, messages);
    (void)ln->close();
    server.wait();
  });
  return rc;
}
