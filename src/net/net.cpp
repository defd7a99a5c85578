// src/net/net.cpp — goro::net: sockets on the netpoller (see goro/net.hpp).
//
// Every socket is non-blocking and registered with the netpoller for its
// whole life. An operation holds a reference on the descriptor (so close()
// from another fiber cannot let the fd number be reused under it), tries its
// syscall, and on EAGAIN waits for readiness and tries again: Go's
// internal/poll.FD loop.
#include "goro/net.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "goro/blocking.hpp"
#include "goro/time.hpp"
#include "net/netpoll.hpp"

namespace goro::net {

using goro::detail::poll_desc;
using goro::detail::poll_mode;

namespace {

// Debian's Abseil has its own string_view type.
absl::string_view av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status closed_status() {
  return absl::FailedPreconditionError("use of closed network connection");
}

absl::Status eof_status() { return absl::OutOfRangeError("EOF"); }

absl::Status errno_status(int err, std::string_view op) {
  switch (err) {
    case ECONNRESET:
      return absl::AbortedError(absl::StrCat(av(op), ": connection reset by peer"));
    case EPIPE:
      return absl::AbortedError(absl::StrCat(av(op), ": broken pipe"));
    case ECONNREFUSED:
      return absl::UnavailableError(absl::StrCat(av(op), ": connection refused"));
    case ETIMEDOUT:
      return absl::DeadlineExceededError(absl::StrCat(av(op), ": connection timed out"));
    case EADDRINUSE:
      return absl::AlreadyExistsError(absl::StrCat(av(op), ": address already in use"));
    case EBADF:
      return closed_status();
    default:
      return absl::ErrnoToStatus(err, av(op));
  }
}

// A reference on the descriptor for the length of one operation.
class op_ref {
 public:
  explicit op_ref(poll_desc* pd) : pd_(pd != nullptr && detail::acquire_ref(pd) ? pd : nullptr) {}
  ~op_ref() {
    if (pd_ != nullptr) detail::release_ref(pd_);
  }
  op_ref(const op_ref&) = delete;
  op_ref& operator=(const op_ref&) = delete;
  bool ok() const { return pd_ != nullptr; }

 private:
  poll_desc* pd_;
};

// The context's error if it has ended (every call starts with this: an
// ended context fails an operation even if it could complete at once).
absl::Status ctx_err(const context* ctx) {
  if (ctx == nullptr) return absl::OkStatus();
  return ctx->err();
}

absl::Status wait(poll_desc* pd, poll_mode mode, const context* ctx) {
  return detail::wait_ready(pd, mode, ctx, detail::kNoTimer);
}

// Go's internal/poll loop: runs `syscall` (returning a count or -1 with
// errno) until it succeeds, waiting for readiness in `mode` on EAGAIN and
// retrying on EINTR. Errors become statuses; an error caused by a concurrent
// close() reads as "use of closed connection".
template <class F>
absl::StatusOr<ssize_t> retry_io(poll_desc* pd, poll_mode mode, const context* ctx,
                                 std::string_view op, F syscall) {
  for (;;) {
    const ssize_t n = syscall();
    if (n >= 0) return n;
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EAGAIN) {
      if (pd->closing.load(std::memory_order_acquire)) return closed_status();
      return errno_status(err, op);
    }
    if (absl::Status st = wait(pd, mode, ctx); !st.ok()) return st;
  }
}

// A one-shot call on the fd (shutdown, setsockopt) under a reference.
template <class F>
absl::Status on_fd(poll_desc* pd, std::string_view op, F call) {
  op_ref ref(pd);
  if (!ref.ok()) return closed_status();
  if (call(pd->fd) != 0) return errno_status(errno, op);
  return absl::OkStatus();
}

void drop(poll_desc*& pd) {
  if (pd != nullptr) detail::destroy_desc(std::exchange(pd, nullptr));
}

// A new non-blocking socket, registered. Error: nothing to clean up.
absl::StatusOr<poll_desc*> new_socket(int family, int type) {
  const int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status(errno, "socket");
  absl::StatusOr<poll_desc*> pd = detail::open_desc(fd);
  if (pd.ok()) (*pd)->family = family;
  return pd;
}

// An IPv4 address as ::ffff:a.b.c.d, for a dual-stack IPv6 socket.
address v4_mapped(const address& a) {
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(a.sa());
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = v4->sin_port;
  v6.sin6_addr.s6_addr[10] = 0xff;
  v6.sin6_addr.s6_addr[11] = 0xff;
  std::memcpy(&v6.sin6_addr.s6_addr[12], &v4->sin_addr, 4);
  return address::from_sockaddr_raw(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
}

bool set_int_opt(int fd, int level, int opt, int v) {
  return ::setsockopt(fd, level, opt, &v, sizeof v) == 0;
}

// TCP_INQ (Linux 4.18): reads report the bytes left queued (read_inq).
bool enable_inq(int fd) { return set_int_opt(fd, IPPROTO_TCP, TCP_INQ, 1); }

bool is_tcp_family(int family) { return family == AF_INET || family == AF_INET6; }

absl::StatusOr<std::uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  if (s.empty() || s.size() > 5)
    return absl::InvalidArgumentError(absl::StrCat("invalid port \"", av(s), "\""));
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("invalid port \"", av(s), "\""));
  }
  return static_cast<std::uint16_t>(v);
}

// Splits "host:port", "[v6]:port", ":port".
absl::Status split_host_port(std::string_view hp, std::string_view* host, std::string_view* port) {
  if (hp.empty()) return absl::InvalidArgumentError("missing address");
  if (hp.front() == '[') {
    const auto close = hp.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("missing ']' in address \"", av(hp), "\""));
    }
    if (close + 1 >= hp.size() || hp[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("missing port in address \"", av(hp), "\""));
    }
    *host = hp.substr(1, close - 1);
    *port = hp.substr(close + 2);
    return absl::OkStatus();
  }
  const auto colon = hp.rfind(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("missing port in address \"", av(hp), "\""));
  }
  *host = hp.substr(0, colon);
  if (host->find(':') != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("too many colons in address \"", av(hp), "\""));
  }
  *port = hp.substr(colon + 1);
  return absl::OkStatus();
}

}  // namespace

// ---- address ----------------------------------------------------------------

absl::StatusOr<address> address::ip(std::string_view host, std::uint16_t port) {
  address a;
  if (host.empty()) {
    // The unspecified address; listeners make it dual-stack (see listen()).
    host = "::";
  }
  std::string h(host);
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&a.ss_, &v4, sizeof v4);
    a.len_ = sizeof v4;
    return a;
  }
  sockaddr_in6 v6{};
  std::string zone;
  if (auto pct = h.find('%'); pct != std::string::npos) {
    zone = h.substr(pct + 1);
    h.resize(pct);
  }
  if (::inet_pton(AF_INET6, h.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    if (!zone.empty()) {
      unsigned idx = ::if_nametoindex(zone.c_str());
      if (idx == 0) {
        unsigned n = 0;
        auto [end, ec] = std::from_chars(zone.data(), zone.data() + zone.size(), n);
        if (ec != std::errc() || end != zone.data() + zone.size()) {
          return absl::InvalidArgumentError(absl::StrCat("unknown zone \"", av(zone), "\""));
        }
        idx = n;
      }
      v6.sin6_scope_id = idx;
    }
    std::memcpy(&a.ss_, &v6, sizeof v6);
    a.len_ = sizeof v6;
    return a;
  }
  return absl::InvalidArgumentError(absl::StrCat("not an IP address: \"", av(host), "\""));
}

absl::StatusOr<address> address::parse(std::string_view host_port) {
  std::string_view host, port;
  if (absl::Status st = split_host_port(host_port, &host, &port); !st.ok()) return st;
  absl::StatusOr<std::uint16_t> p = parse_port(port);
  if (!p.ok()) return p.status();
  return ip(host, *p);
}

absl::StatusOr<address> address::unix_path(std::string_view path) {
  address a;
  sockaddr_un un{};
  if (path.empty() || path.size() >= sizeof un.sun_path) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unix socket path must be 1..%d bytes", sizeof un.sun_path - 1));
  }
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  if (path.front() == '@') un.sun_path[0] = '\0';  // Linux's abstract namespace
  std::memcpy(&a.ss_, &un, sizeof un);
  a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                  (path.front() == '@' ? 0 : 1));
  return a;
}

address address::from_sockaddr_raw(const sockaddr* sa, socklen_t len) {
  address a;
  if (len > sizeof a.ss_) len = sizeof a.ss_;
  std::memcpy(&a.ss_, sa, len);
  a.len_ = len;
  return a;
}

address address::from_sockaddr(const sockaddr* sa, socklen_t len) {
  address a = from_sockaddr_raw(sa, len);
  // An IPv4 peer of a dual-stack socket arrives as ::ffff:a.b.c.d; report it
  // as the IPv4 address it is (as Go does), so it prints and compares so.
  if (a.is_ipv6()) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a.ss_);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      sockaddr_in v4{};
      v4.sin_family = AF_INET;
      v4.sin_port = v6->sin6_port;
      std::memcpy(&v4.sin_addr, &v6->sin6_addr.s6_addr[12], 4);
      address m;
      std::memcpy(&m.ss_, &v4, sizeof v4);
      m.len_ = sizeof v4;
      return m;
    }
  }
  return a;
}

std::uint16_t address::port() const {
  if (is_ipv4()) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  if (is_ipv6()) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return 0;
}

std::string address::host() const {
  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
  if (is_ipv4()) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf, sizeof buf);
    return buf;
  }
  if (is_ipv6()) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss_);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    std::string h = buf;
    if (v6->sin6_scope_id != 0) {
      char name[IF_NAMESIZE] = {};
      if (::if_indextoname(v6->sin6_scope_id, name) != nullptr) {
        absl::StrAppend(&h, "%", name);
      } else {
        absl::StrAppend(&h, "%", v6->sin6_scope_id);
      }
    }
    return h;
  }
  if (is_unix()) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&ss_);
    const std::size_t off = offsetof(sockaddr_un, sun_path);
    if (len_ <= off) return {};  // unnamed (a connecting client's end)
    std::size_t n = len_ - off;
    if (un->sun_path[0] == '\0') return "@" + std::string(un->sun_path + 1, n - 1);
    return std::string(un->sun_path, strnlen(un->sun_path, n));
  }
  return {};
}

std::string address::to_string() const {
  if (is_ipv4()) return absl::StrCat(host(), ":", port());
  if (is_ipv6()) return absl::StrCat("[", host(), "]:", port());
  return host();
}

bool operator==(const address& a, const address& b) {
  return a.len_ == b.len_ && std::memcmp(&a.ss_, &b.ss_, a.len_) == 0;
}

absl::StatusOr<std::vector<address>> resolve(const context& ctx, std::string_view host,
                                             std::string_view port) {
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  // Literals need no resolver.
  if (absl::StatusOr<std::uint16_t> p = parse_port(port); p.ok()) {
    if (absl::StatusOr<address> a = address::ip(host, *p); a.ok()) {
      return std::vector<address>{*a};
    }
  }
  std::string h(host), s(port);
  // getaddrinfo blocks its thread and cannot be interrupted: it runs on the
  // blocking pool; the context is checked again when it returns.
  auto res = goro::blocking([&]() -> absl::StatusOr<std::vector<address>> {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(h.c_str(), s.c_str(), &hints, &list);
    if (rc != 0) {
      if (rc == EAI_SYSTEM) return errno_status(errno, "getaddrinfo");
      if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_SERVICE) {
        return absl::NotFoundError(
            absl::StrCat("lookup ", h, ":", av(s), ": ", ::gai_strerror(rc)));
      }
      return absl::UnavailableError(absl::StrCat("lookup ", h, ": ", ::gai_strerror(rc)));
    }
    std::vector<address> v4, v6;
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
      address a = address::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
      auto& dst = a.is_ipv4() ? v4 : v6;
      bool dup = false;
      for (const address& x : dst) dup = dup || x == a;
      if (!dup) dst.push_back(a);
    }
    ::freeaddrinfo(list);
    v4.insert(v4.end(), v6.begin(), v6.end());
    if (v4.empty()) return absl::NotFoundError(absl::StrCat("lookup ", h, ": no addresses"));
    return v4;
  });
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  return res;
}

bool is_eof(const absl::Status& s) { return s.code() == absl::StatusCode::kOutOfRange; }
bool is_closed(const absl::Status& s) { return s.code() == absl::StatusCode::kFailedPrecondition; }
bool is_reset(const absl::Status& s) { return s.code() == absl::StatusCode::kAborted; }
bool is_refused(const absl::Status& s) { return s.code() == absl::StatusCode::kUnavailable; }
bool is_timeout(const absl::Status& s) { return s.code() == absl::StatusCode::kDeadlineExceeded; }

// ---- conn ---------------------------------------------------------------------

namespace {

// do_read's recv on a socket with TCP_INQ (poll_desc::tcp_inq): recvmsg, whose
// TCP_CM_INQ message says what the read left behind. A request/response
// client's read_full fills its buffer exactly; knowing the queue is empty
// then lets its next read (after its next request) wait for the reply's
// edge instead of first trying a recv that says EAGAIN: one system call of
// five per round trip.
absl::StatusOr<std::size_t> read_inq(poll_desc* pd, const context* ctx, std::span<char> buf) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  int inq = -1;
  absl::StatusOr<ssize_t> n = retry_io(pd, detail::poll_read, ctx, "read", [&] {
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t r = ::recvmsg(pd->fd, &msg, 0);
    if (r < 0) return r;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
        std::memcpy(&inq, CMSG_DATA(c), sizeof inq);
      }
    }
    return r;
  });
  if (!n.ok()) return n.status();
  if (*n == 0) return eof_status();
  if (inq == 0) pd->rd_drained.store(true, std::memory_order_relaxed);
  return static_cast<std::size_t>(*n);
}

absl::StatusOr<std::size_t> do_read(poll_desc* pd, const context* ctx, std::span<char> buf) {
  if (pd == nullptr) return closed_status();
  if (absl::Status st = ctx_err(ctx); !st.ok()) return st;
  if (buf.empty()) return 0;
  op_ref ref(pd);
  if (!ref.ok()) return closed_status();
  // The last read left the queue empty: wait for the next edge first (see
  // poll_desc::rd_drained; a stale readiness token only costs the EAGAIN we
  // would have had anyway).
  if (pd->rd_drained.exchange(false, std::memory_order_relaxed) &&
      !pd->rd_final.load(std::memory_order_relaxed)) {
    if (absl::Status st = wait(pd, detail::poll_read, ctx); !st.ok()) return st;
  }
  if (pd->tcp_inq) return read_inq(pd, ctx, buf);
  absl::StatusOr<ssize_t> n = retry_io(pd, detail::poll_read, ctx, "read",
                                       [&] { return ::recv(pd->fd, buf.data(), buf.size(), 0); });
  if (!n.ok()) return n.status();
  if (*n == 0) return eof_status();
  // No rd_drained from a short read here: a read also stops short at an
  // urgent mark (MSG_OOB, on TCP and, since Linux 5.15, on Unix stream
  // sockets) with data still queued behind it, and no new edge would come
  // for that data. Only TCP_INQ says for sure that the queue is empty.
  return static_cast<std::size_t>(*n);
}

absl::Status do_read_full(poll_desc* pd, const context* ctx, std::span<char> buf) {
  std::size_t got = 0;
  while (got < buf.size()) {
    absl::StatusOr<std::size_t> n = do_read(pd, ctx, buf.subspan(got));
    if (!n.ok()) {
      if (is_eof(n.status()) && got > 0) return absl::OutOfRangeError("unexpected EOF");
      return n.status();
    }
    got += *n;
  }
  return absl::OkStatus();
}

absl::Status do_write(poll_desc* pd, const context* ctx, std::span<const char> buf) {
  if (pd == nullptr) return closed_status();
  if (absl::Status st = ctx_err(ctx); !st.ok()) return st;
  op_ref ref(pd);
  if (!ref.ok()) return closed_status();
  std::size_t done = 0;
  while (done < buf.size()) {
    absl::StatusOr<ssize_t> n = retry_io(pd, detail::poll_write, ctx, "write", [&] {
      return ::send(pd->fd, buf.data() + done, buf.size() - done, MSG_NOSIGNAL);
    });
    if (!n.ok()) return n.status();
    done += static_cast<std::size_t>(*n);
  }
  return absl::OkStatus();
}

absl::StatusOr<address> sock_name(poll_desc* pd, bool peer) {
  if (pd == nullptr) return closed_status();
  op_ref ref(pd);
  if (!ref.ok()) return closed_status();
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  const int rc = peer ? ::getpeername(pd->fd, sa, &len) : ::getsockname(pd->fd, sa, &len);
  if (rc != 0) return errno_status(errno, peer ? "getpeername" : "getsockname");
  return address::from_sockaddr(sa, len);
}

absl::Status close_pd(poll_desc* pd) {
  if (pd == nullptr || !detail::close_desc(pd)) return closed_status();
  return absl::OkStatus();
}

int fd_of(poll_desc* pd) { return pd == nullptr ? -1 : pd->fd; }

}  // namespace

conn::conn(conn&& o) noexcept : pd_(std::exchange(o.pd_, nullptr)) {}
conn& conn::operator=(conn&& o) noexcept {
  if (this != &o) {
    drop(pd_);
    pd_ = std::exchange(o.pd_, nullptr);
  }
  return *this;
}
conn::~conn() { drop(pd_); }

absl::StatusOr<std::size_t> conn::read(const context& ctx, std::span<char> buf) {
  return do_read(pd_, &ctx, buf);
}
absl::StatusOr<std::size_t> conn::read(std::span<char> buf) { return do_read(pd_, nullptr, buf); }
absl::Status conn::read_full(const context& ctx, std::span<char> buf) {
  return do_read_full(pd_, &ctx, buf);
}
absl::Status conn::read_full(std::span<char> buf) { return do_read_full(pd_, nullptr, buf); }
absl::Status conn::write(const context& ctx, std::span<const char> buf) {
  return do_write(pd_, &ctx, buf);
}
absl::Status conn::write(std::span<const char> buf) { return do_write(pd_, nullptr, buf); }

absl::Status conn::close_write() {
  return on_fd(pd_, "shutdown", [](int fd) { return ::shutdown(fd, SHUT_WR); });
}

absl::Status conn::close_read() {
  return on_fd(pd_, "shutdown", [](int fd) { return ::shutdown(fd, SHUT_RD); });
}

absl::Status conn::close() { return close_pd(pd_); }
absl::StatusOr<address> conn::local_address() const { return sock_name(pd_, false); }
absl::StatusOr<address> conn::remote_address() const { return sock_name(pd_, true); }

absl::Status conn::set_nodelay(bool on) {
  const int v = on ? 1 : 0;
  return on_fd(pd_, "setsockopt(TCP_NODELAY)",
               [v](int fd) { return ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v); });
}

absl::Status conn::set_keepalive(bool on) {
  const int v = on ? 1 : 0;
  return on_fd(pd_, "setsockopt(SO_KEEPALIVE)",
               [v](int fd) { return ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v); });
}

int conn::native_handle() const { return fd_of(pd_); }

// ---- dial ---------------------------------------------------------------------

absl::StatusOr<conn> dial(const context& ctx, const address& to) {
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  if (to.family() != AF_INET && to.family() != AF_INET6 && to.family() != AF_UNIX) {
    return absl::InvalidArgumentError("dial: empty or unsupported address");
  }
  absl::StatusOr<poll_desc*> pd = new_socket(to.family(), SOCK_STREAM);
  if (!pd.ok()) return pd.status();
  conn c(*pd);  // owns it from here: any error below closes it
  const int fd = (*pd)->fd;
  if (is_tcp_family(to.family())) {
    set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    (*pd)->tcp_inq = enable_inq(fd);
  }
  for (;;) {
    if (::connect(fd, to.sa(), to.size()) == 0) return c;
    const int err = errno;
    if (err == EINTR || err == EINPROGRESS) break;
    if (err == EAGAIN && to.is_unix()) {
      // A Unix listener's backlog is full: try again shortly.
      if (absl::Status st = sleep_for(ctx, std::chrono::milliseconds(1)); !st.ok()) return st;
      continue;
    }
    return errno_status(err, "dial");
  }
  // In progress: writable once it completes. The wait may wake spuriously,
  // so "connected" is decided by SO_ERROR and then getpeername (as Go).
  for (;;) {
    if (absl::Status st = wait(*pd, detail::poll_write, &ctx); !st.ok()) return st;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
      return errno_status(errno, "dial");
    }
    if (soerr == EINPROGRESS || soerr == EALREADY || soerr == EINTR) continue;
    if (soerr != 0) return errno_status(soerr, "dial");
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) return c;
    if (errno != ENOTCONN) return errno_status(errno, "dial");
  }
}

absl::StatusOr<conn> dial_tcp(const context& ctx, std::string_view host_port) {
  std::string_view host, port;
  if (absl::Status st = split_host_port(host_port, &host, &port); !st.ok()) return st;
  if (host.empty()) host = "127.0.0.1";  // Go dials the local system for ":port"
  absl::StatusOr<std::vector<address>> addrs = resolve(ctx, host, port);
  if (!addrs.ok()) return addrs.status();
  absl::Status first;
  for (const address& a : *addrs) {
    absl::StatusOr<conn> c = dial(ctx, a);
    if (c.ok()) return c;
    if (first.ok()) first = c.status();
    if (absl::Status st = ctx.err(); !st.ok()) return st;
  }
  return first;
}

absl::StatusOr<conn> dial_tcp(std::string_view host_port) {
  return dial_tcp(context::background(), host_port);
}

absl::StatusOr<conn> dial_unix(const context& ctx, std::string_view path) {
  absl::StatusOr<address> a = address::unix_path(path);
  if (!a.ok()) return a.status();
  return dial(ctx, *a);
}

// ---- listener -------------------------------------------------------------------

listener::listener(listener&& o) noexcept
    : pd_(std::exchange(o.pd_, nullptr)), unlink_path_(std::move(o.unlink_path_)) {
  o.unlink_path_.clear();
}

listener& listener::operator=(listener&& o) noexcept {
  if (this != &o) {
    (void)close();
    drop(pd_);
    pd_ = std::exchange(o.pd_, nullptr);
    unlink_path_ = std::move(o.unlink_path_);
    o.unlink_path_.clear();
  }
  return *this;
}

listener::~listener() {
  (void)close();
  drop(pd_);
}

absl::StatusOr<conn> listener::accept(const context& ctx) {
  if (pd_ == nullptr) return closed_status();
  if (absl::Status st = ctx.err(); !st.ok()) return st;
  op_ref ref(pd_);
  if (!ref.ok()) return closed_status();
  sockaddr_storage ss{};
  absl::StatusOr<ssize_t> fd = retry_io(pd_, detail::poll_read, &ctx, "accept", [&]() -> ssize_t {
    for (;;) {
      socklen_t len = sizeof ss;
      const int r =
          ::accept4(pd_->fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      // A connection reset while it was queued is not our error (Go too).
      if (r >= 0 || errno != ECONNABORTED) return r;
    }
  });
  if (!fd.ok()) return fd.status();
  bool inq = false;
  if (is_tcp_family(ss.ss_family)) {
    set_int_opt(static_cast<int>(*fd), IPPROTO_TCP, TCP_NODELAY, 1);
    inq = enable_inq(static_cast<int>(*fd));
  }
  absl::StatusOr<poll_desc*> pd = detail::open_desc(static_cast<int>(*fd));
  if (!pd.ok()) return pd.status();
  (*pd)->tcp_inq = inq;
  return conn(*pd);
}

absl::StatusOr<conn> listener::accept() { return accept(context::background()); }

absl::Status listener::close() {
  absl::Status st = close_pd(pd_);
  if (st.ok() && !unlink_path_.empty()) {
    ::unlink(unlink_path_.c_str());
    unlink_path_.clear();
  }
  return st;
}

absl::StatusOr<address> listener::local_address() const { return sock_name(pd_, false); }
int listener::native_handle() const { return fd_of(pd_); }

namespace {

bool is_unspecified_v6(const address& a) {
  if (!a.is_ipv6()) return false;
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(a.sa());
  return IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr);
}

// A bound socket of `type` at `at`; an unspecified IPv6 address is made
// dual-stack, and falls back to 0.0.0.0 where IPv6 is unavailable.
absl::StatusOr<poll_desc*> bound_socket(address at, int type, const listen_options& opts) {
  absl::StatusOr<poll_desc*> pd = new_socket(at.family(), type);
  if (!pd.ok() && is_unspecified_v6(at)) {
    absl::StatusOr<address> any4 = address::ip("0.0.0.0", at.port());
    at = *any4;
    pd = new_socket(at.family(), type);
  }
  if (!pd.ok()) return pd.status();
  const int fd = (*pd)->fd;
  if (is_tcp_family(at.family())) {
    if (opts.reuse_addr && type == SOCK_STREAM) set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (opts.reuse_port) set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (is_unspecified_v6(at)) set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
  }
  if (::bind(fd, at.sa(), at.size()) != 0) {
    const int err = errno;
    poll_desc* p = *pd;
    drop(p);
    return errno_status(err, absl::StrCat("bind ", at.to_string()));
  }
  return pd;
}

}  // namespace

absl::StatusOr<listener> listen(const address& at, const listen_options& opts) {
  if (at.family() != AF_INET && at.family() != AF_INET6 && at.family() != AF_UNIX) {
    return absl::InvalidArgumentError("listen: empty or unsupported address");
  }
  if (opts.backlog < 1) return absl::InvalidArgumentError("listen: backlog must be positive");
  absl::StatusOr<poll_desc*> pd = bound_socket(at, SOCK_STREAM, opts);
  if (!pd.ok()) return pd.status();
  listener l(*pd);
  if (::listen((*pd)->fd, opts.backlog) != 0) return errno_status(errno, "listen");
  if (at.is_unix()) {
    const std::string path = at.host();
    if (!path.empty() && path.front() != '@') l.unlink_path_ = path;
  }
  return l;
}

absl::StatusOr<listener> listen_tcp(std::string_view host_port, const listen_options& opts) {
  absl::StatusOr<address> a = address::parse(host_port);
  if (!a.ok()) return a.status();
  return listen(*a, opts);
}

absl::StatusOr<listener> listen_unix(std::string_view path, const listen_options& opts) {
  absl::StatusOr<address> a = address::unix_path(path);
  if (!a.ok()) return a.status();
  return listen(*a, opts);
}

// ---- udp ----------------------------------------------------------------------------

udp_socket::udp_socket(udp_socket&& o) noexcept : pd_(std::exchange(o.pd_, nullptr)) {}
udp_socket& udp_socket::operator=(udp_socket&& o) noexcept {
  if (this != &o) {
    drop(pd_);
    pd_ = std::exchange(o.pd_, nullptr);
  }
  return *this;
}
udp_socket::~udp_socket() { drop(pd_); }

namespace {

absl::Status do_send_to(poll_desc* pd, const context* ctx, std::span<const char> buf,
                        const address& to) {
  if (pd == nullptr) return closed_status();
  if (absl::Status st = ctx_err(ctx); !st.ok()) return st;
  op_ref ref(pd);
  if (!ref.ok()) return closed_status();
  // IPv4 peers of a dual-stack socket are reported unmapped (from_sockaddr):
  // map them back for sendto.
  const address mapped = pd->family == AF_INET6 && to.is_ipv4() ? v4_mapped(to) : address();
  const address& dst = mapped.family() == AF_INET6 ? mapped : to;
  return retry_io(pd, detail::poll_write, ctx, "sendto",
                  [&] {
                    return ::sendto(pd->fd, buf.data(), buf.size(), MSG_NOSIGNAL, dst.sa(),
                                    dst.size());
                  })
      .status();
}

absl::StatusOr<datagram> do_recv_from(poll_desc* pd, const context* ctx, std::span<char> buf) {
  if (pd == nullptr) return closed_status();
  if (absl::Status st = ctx_err(ctx); !st.ok()) return st;
  op_ref ref(pd);
  if (!ref.ok()) return closed_status();
  sockaddr_storage ss{};
  socklen_t len = 0;
  absl::StatusOr<ssize_t> n = retry_io(pd, detail::poll_read, ctx, "recvfrom", [&] {
    len = sizeof ss;
    return ::recvfrom(pd->fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
  });
  if (!n.ok()) return n.status();
  datagram d;
  d.size = static_cast<std::size_t>(*n);
  d.from = address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return d;
}

}  // namespace

absl::Status udp_socket::send_to(const context& ctx, std::span<const char> buf, const address& to) {
  return do_send_to(pd_, &ctx, buf, to);
}
absl::Status udp_socket::send_to(std::span<const char> buf, const address& to) {
  return do_send_to(pd_, nullptr, buf, to);
}
absl::StatusOr<datagram> udp_socket::recv_from(const context& ctx, std::span<char> buf) {
  return do_recv_from(pd_, &ctx, buf);
}
absl::StatusOr<datagram> udp_socket::recv_from(std::span<char> buf) {
  return do_recv_from(pd_, nullptr, buf);
}
absl::Status udp_socket::close() { return close_pd(pd_); }
absl::StatusOr<address> udp_socket::local_address() const { return sock_name(pd_, false); }
int udp_socket::native_handle() const { return fd_of(pd_); }

absl::StatusOr<udp_socket> listen_udp(std::string_view host_port) {
  absl::StatusOr<address> a = address::parse(host_port);
  if (!a.ok()) return a.status();
  absl::StatusOr<poll_desc*> pd = bound_socket(*a, SOCK_DGRAM, listen_options{});
  if (!pd.ok()) return pd.status();
  return udp_socket(*pd);
}

}  // namespace goro::net
