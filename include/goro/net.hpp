// goro/net.hpp — sockets for fibers: Go's net package on the netpoller.
//
// Code reads as blocking; only the calling fiber parks while its worker
// runs other fibers (an OS thread that is not a fiber blocks itself, as with
// every goro call). Every blocking call has a form taking a goro::context
// and returns absl::Status / absl::StatusOr; the forms without one wait
// without limit.
//
//   Go                                 goro
//   net.Listen("tcp", ":8080")         goro::net::listen_tcp(":8080")
//   ln.Accept()                        ln.accept(ctx)
//   net.DialTimeout / DialContext      goro::net::dial_tcp(ctx, "host:port")
//   net.Dial("unix", path)             goro::net::dial_unix(ctx, path)
//   c.Read(b) / io.ReadFull(c, b)      c.read(ctx, buf) / c.read_full(ctx, buf)
//   c.Write(b)                         c.write(ctx, buf)   (all of it, or an error)
//   c.(*net.TCPConn).CloseWrite()      c.close_write()
//   c.Close()                          c.close()
//   net.ListenPacket("udp", addr)      goro::net::listen_udp(addr)
//   pc.WriteTo / pc.ReadFrom           s.send_to(ctx, buf, addr) / s.recv_from(ctx, buf)
//   net.LookupHost / ResolveTCPAddr    goro::net::resolve(ctx, host, port)
//
// Statuses (the same for every call; the helpers below test for them):
//   OK                      done
//   OutOfRange "EOF"        the peer closed its side (read_full: "unexpected
//                           EOF" if it closed after part of the buffer)
//   Aborted                 connection reset by peer / broken pipe
//   Unavailable             connection refused (dial)
//   FailedPrecondition      use of a closed socket, also for a fiber that
//                           was blocked on it when another fiber closed it
//   Cancelled / DeadlineExceeded   the context ended (the operation did not
//                           happen, or, for write, happened in part: the
//                           socket stays usable but the stream may hold a
//                           partial message)
//   AlreadyExists           address already in use (bind), or listen_unix on
//                           an existing file
//   InvalidArgument         a malformed address
//   NotFound                a name that does not resolve
//   others                  the errno, via absl::ErrnoToStatus
//
// Sockets are move-only owners of their fd (close() or the destructor
// closes it; no fd leaks). Several fibers may use one socket at once (one
// reading while another writes is the usual case) and close() from any
// fiber wakes those blocked on it; but the object itself may be destroyed
// only once no other fiber is inside one of its calls.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "goro/context.hpp"

namespace goro::detail {
struct poll_desc;
}

namespace goro::net {

// ---- addresses --------------------------------------------------------------

// An IPv4, IPv6 or Unix-domain socket address.
class address {
 public:
  address() = default;  // empty: family() == AF_UNSPEC

  // "1.2.3.4:80", "[::1]:80", ":80" (any address, IPv6 dual-stack where
  // available), "[fe80::1%eth0]:80". Numeric only: names go through resolve().
  static absl::StatusOr<address> parse(std::string_view host_port);
  // An IP literal and a port ("::1", 80).
  static absl::StatusOr<address> ip(std::string_view host, std::uint16_t port);
  // A Unix-domain path (a leading '@' is Linux's abstract namespace).
  static absl::StatusOr<address> unix_path(std::string_view path);
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) comes back as IPv4, as Go
  // reports the peers of a dual-stack socket; _raw keeps it as it is.
  static address from_sockaddr(const sockaddr* sa, socklen_t len);
  static address from_sockaddr_raw(const sockaddr* sa, socklen_t len);

  int family() const { return ss_.ss_family; }
  bool is_ipv4() const { return family() == AF_INET; }
  bool is_ipv6() const { return family() == AF_INET6; }
  bool is_unix() const { return family() == AF_UNIX; }
  std::uint16_t port() const;     // 0 for Unix addresses
  std::string host() const;       // "1.2.3.4", "::1", or the path
  std::string to_string() const;  // "1.2.3.4:80", "[::1]:80", or the path

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t size() const { return len_; }

  friend bool operator==(const address& a, const address& b);

 private:
  sockaddr_storage ss_{};
  socklen_t len_ = 0;
};

// Name resolution (getaddrinfo, which blocks its thread, run through
// goro::blocking). port may be numeric or a service name. IPv4 results first.
absl::StatusOr<std::vector<address>> resolve(const context& ctx, std::string_view host,
                                             std::string_view port);

// Status tests for the documented outcomes above.
bool is_eof(const absl::Status& s);      // OutOfRange "EOF" or "unexpected EOF"
bool is_closed(const absl::Status& s);   // FailedPrecondition (use of closed socket)
bool is_reset(const absl::Status& s);    // Aborted (reset by peer, broken pipe)
bool is_refused(const absl::Status& s);  // Unavailable (connection refused)
bool is_timeout(const absl::Status& s);  // DeadlineExceeded

// ---- stream connections (TCP, Unix) ------------------------------------------

class conn {
 public:
  conn() = default;  // not connected: every call says FailedPrecondition
  conn(conn&&) noexcept;
  conn& operator=(conn&&) noexcept;
  ~conn();

  bool valid() const { return pd_ != nullptr; }
  explicit operator bool() const { return valid(); }

  // Up to buf.size() bytes as soon as any are available (> 0), or a status
  // (OutOfRange "EOF" at the end of the stream). An empty buffer returns 0.
  absl::StatusOr<std::size_t> read(const context& ctx, std::span<char> buf);
  absl::StatusOr<std::size_t> read(std::span<char> buf);
  // Exactly buf.size() bytes, or a status: "EOF" if the stream ended before
  // the first byte, "unexpected EOF" after some.
  absl::Status read_full(const context& ctx, std::span<char> buf);
  absl::Status read_full(std::span<char> buf);
  // All of buf (waiting while the peer's window is full), or a status.
  absl::Status write(const context& ctx, std::span<const char> buf);
  absl::Status write(std::span<const char> buf);
  // Strings: anything convertible to std::string_view (a literal is written
  // without its terminating NUL, std::string, std::string_view). Templates,
  // so that a literal or a std::string is not ambiguous between these and
  // the span forms.
  template <class S>
  requires std::is_convertible_v<const S&, std::string_view> absl::Status write(const context& ctx,
                                                                                const S& s) {
    const std::string_view v(s);
    return write(ctx, std::span<const char>(v.data(), v.size()));
  }
  template <class S>
  requires std::is_convertible_v<const S&, std::string_view> absl::Status write(const S& s) {
    const std::string_view v(s);
    return write(std::span<const char>(v.data(), v.size()));
  }

  absl::Status close_write();  // half-close: the peer reads EOF; we may still read
  absl::Status close_read();
  // Closes the socket: fibers blocked on it return FailedPrecondition.
  // A second close() returns FailedPrecondition.
  absl::Status close();

  absl::StatusOr<address> local_address() const;
  absl::StatusOr<address> remote_address() const;
  absl::Status set_nodelay(bool on);  // TCP only (TCP_NODELAY; dial/accept set it, as Go)
  absl::Status set_keepalive(bool on);
  int native_handle() const;  // the fd, or -1; still owned by the conn

 private:
  friend class listener;
  friend absl::StatusOr<conn> dial(const context&, const address&);
  explicit conn(goro::detail::poll_desc* pd) : pd_(pd) {}
  goro::detail::poll_desc* pd_ = nullptr;
};

// Connects to `to` (TCP for IP addresses, stream for Unix paths); ctx bounds
// the whole attempt (use with_timeout for Go's DialTimeout).
absl::StatusOr<conn> dial(const context& ctx, const address& to);
// "host:port" with a numeric or resolvable host; tries each resolved address
// in turn until one connects.
absl::StatusOr<conn> dial_tcp(const context& ctx, std::string_view host_port);
absl::StatusOr<conn> dial_tcp(std::string_view host_port);
absl::StatusOr<conn> dial_unix(const context& ctx, std::string_view path);

// ---- listeners ---------------------------------------------------------------

struct listen_options {
  int backlog = 511;        // SOMAXCONN-like default, capped by the kernel
  bool reuse_addr = true;   // SO_REUSEADDR (TCP)
  bool reuse_port = false;  // SO_REUSEPORT (TCP)
};

class listener {
 public:
  listener() = default;
  listener(listener&&) noexcept;
  listener& operator=(listener&&) noexcept;
  ~listener();

  bool valid() const { return pd_ != nullptr; }
  explicit operator bool() const { return valid(); }

  absl::StatusOr<conn> accept(const context& ctx);
  absl::StatusOr<conn> accept();
  // Fibers blocked in accept return FailedPrecondition. A Unix listener
  // removes its socket file.
  absl::Status close();
  absl::StatusOr<address> local_address() const;  // e.g. the port chosen for ":0"
  int native_handle() const;

 private:
  friend absl::StatusOr<listener> listen(const address&, const listen_options&);
  explicit listener(goro::detail::poll_desc* pd) : pd_(pd) {}
  goro::detail::poll_desc* pd_ = nullptr;
  std::string unlink_path_;
};

absl::StatusOr<listener> listen(const address& at, const listen_options& opts = {});
// "host:port", ":port" (all interfaces), port 0 picks a free port.
absl::StatusOr<listener> listen_tcp(std::string_view host_port, const listen_options& opts = {});
// An existing socket file at `path` is an error (AlreadyExists), as Go.
absl::StatusOr<listener> listen_unix(std::string_view path, const listen_options& opts = {});

// ---- datagrams (UDP) ---------------------------------------------------------

struct datagram {
  std::size_t size = 0;  // bytes received (a longer datagram is truncated to the buffer)
  address from;
};

class udp_socket {
 public:
  udp_socket() = default;
  udp_socket(udp_socket&&) noexcept;
  udp_socket& operator=(udp_socket&&) noexcept;
  ~udp_socket();

  bool valid() const { return pd_ != nullptr; }
  explicit operator bool() const { return valid(); }

  // Sends one datagram (all of buf, or a status).
  absl::Status send_to(const context& ctx, std::span<const char> buf, const address& to);
  absl::Status send_to(std::span<const char> buf, const address& to);
  absl::StatusOr<datagram> recv_from(const context& ctx, std::span<char> buf);
  absl::StatusOr<datagram> recv_from(std::span<char> buf);
  absl::Status close();
  absl::StatusOr<address> local_address() const;
  int native_handle() const;

 private:
  friend absl::StatusOr<udp_socket> listen_udp(std::string_view);
  explicit udp_socket(goro::detail::poll_desc* pd) : pd_(pd) {}
  goro::detail::poll_desc* pd_ = nullptr;
};

// Binds a UDP socket: "127.0.0.1:0", "[::1]:9000", ":0".
absl::StatusOr<udp_socket> listen_udp(std::string_view host_port);

}  // namespace goro::net
