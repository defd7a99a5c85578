// http_hello — a minimal HTTP/1.1 server on goro::net: a fiber per
// connection, keep-alive, "Hello, World!" for every request. Enough HTTP for
// curl and wrk, not a general server: requests are a request line and
// headers (bodies announced by Content-Length are read and ignored; chunked
// request bodies are refused with 501), responses are always 200 with a
// text/plain body, malformed requests get 400 and the connection is closed.
//
//   http_hello                         serves on 127.0.0.1:0, sends itself
//                                      requests (keep-alive, separate
//                                      connections, bad ones), checks the
//                                      answers and exits
//   http_hello --listen HOST:PORT      serves forever:
//                                        curl -v http://HOST:PORT/
//                                        wrk -t2 -c100 -d5s http://HOST:PORT/
//
// bench/http.sh runs it under wrk beside its Go net/http twin
// (bench/go/http_hello).
#include <goro/goro.hpp>
#include <goro/net.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace net = goro::net;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kBody = "Hello, World!\n";
constexpr std::size_t kMaxHeader = 8192;  // a request's line and headers

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a comma-separated header value lists `token` (Connection: a, b).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

struct request {
  enum { ok, bad, unsupported } verdict = bad;
  bool head = false;  // HEAD: the same headers, no body
  bool http10 = false;
  bool keep_alive = false;
  std::size_t content_length = 0;
};

// Parses a request's line and headers: `text` ends with the CRLF of the last
// header line (the blank line is not included).
request parse(std::string_view text) {
  request r;
  std::size_t eol = text.find("\r\n");
  const std::string_view line = text.substr(0, eol);
  text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 2);

  // METHOD SP TARGET SP HTTP/1.x
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return r;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char)) return r;
  if (target.empty() || target.find(' ') != std::string_view::npos) return r;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return r;
  r.head = method == "HEAD";
  r.http10 = version == "HTTP/1.0";
  r.keep_alive = !r.http10;  // HTTP/1.0 closes unless asked

  bool have_length = false;
  while (!text.empty()) {
    eol = text.find("\r\n");
    if (eol == std::string_view::npos) return r;
    const std::string_view h = text.substr(0, eol);
    text.remove_prefix(eol + 2);
    const std::size_t colon = h.find(':');
    if (colon == 0 || colon == std::string_view::npos) return r;
    const std::string_view name = h.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_token_char)) return r;
    const std::string_view value = trim(h.substr(colon + 1));
    if (iequals(name, "Connection")) {
      if (has_token(value, "keep-alive")) r.keep_alive = true;
      if (has_token(value, "close")) r.keep_alive = false;  // close wins
    } else if (iequals(name, "Content-Length")) {
      if (value.empty() || value.size() > 12 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return r;
      }
      const std::size_t n = std::stoull(std::string(value));
      if (have_length && n != r.content_length) return r;  // conflicting lengths
      r.content_length = n;
      have_length = true;
    } else if (iequals(name, "Transfer-Encoding")) {
      r.verdict = request::unsupported;
      return r;
    }
  }
  r.verdict = request::ok;
  return r;
}

// How a response ends the connection: HTTP/1.1's default (keep-alive, no
// header), close, or an HTTP/1.0 client's explicit keep-alive.
enum conn_mode { keep = 0, close_after = 1, keep10 = 2 };

std::string response(int code, std::string_view reason, std::string_view body, conn_mode mode,
                     bool head) {
  std::string s = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) +
                  "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n";
  if (mode == close_after) s += "Connection: close\r\n";
  if (mode == keep10) s += "Connection: keep-alive\r\n";
  s += "\r\n";
  if (!head) s += body;
  return s;
}

// Every answer, built once: hello[mode][head], and the two errors.
struct canned {
  std::string hello[3][2];
  std::string bad = response(400, "Bad Request", "400 Bad Request\n", close_after, false);
  std::string unsupported = response(501, "Not Implemented",
                                     "501 chunked bodies are not supported\n", close_after, false);
  canned() {
    for (conn_mode m : {keep, close_after, keep10}) {
      for (bool head : {false, true}) hello[m][head] = response(200, "OK", kBody, m, head);
    }
  }
};
const canned& answers() {
  static const canned c;
  return c;
}

// Ends a connection the way Go's net/http does after a final response: stop
// sending, then drain what the client still sends for a moment, so that
// closing with unread input does not reset the connection (which could
// destroy the response before the client has read it).
void finish(net::conn& c) {
  (void)c.close_write();
  auto [ctx, cancel] = goro::with_timeout(goro::context::background(), 500ms);
  std::array<char, 4096> sink;
  while (c.read(ctx, sink).ok()) {
  }
  cancel();
}

// Serves one connection: requests are taken from a buffer that reads refill.
void serve_conn(net::conn c) {
  std::array<char, kMaxHeader> buf;
  std::size_t start = 0, end = 0;  // unparsed bytes: buf[start, end)
  for (;;) {
    const std::string_view data(buf.data() + start, end - start);
    const std::size_t blank = data.find("\r\n\r\n");
    if (blank == std::string_view::npos) {
      if (end - start == buf.size()) {  // headers too large
        (void)c.write(std::string_view(answers().bad));
        return finish(c);
      }
      if (start > 0) {
        std::memmove(buf.data(), buf.data() + start, end - start);
        end -= start;
        start = 0;
      }
      absl::StatusOr<std::size_t> n = c.read(std::span<char>(buf.data() + end, buf.size() - end));
      if (!n.ok()) return;  // EOF between requests, or the client went away
      end += *n;
      continue;
    }
    const request r = parse(data.substr(0, blank + 2));
    start += blank + 4;
    if (r.verdict != request::ok) {
      (void)c.write(
          std::string_view(r.verdict == request::bad ? answers().bad : answers().unsupported));
      return finish(c);
    }
    // Skip the body: first what is buffered, then straight from the socket.
    std::size_t skip = r.content_length;
    const std::size_t buffered = std::min(skip, end - start);
    start += buffered;
    skip -= buffered;
    while (skip > 0) {
      absl::StatusOr<std::size_t> n =
          c.read(std::span<char>(buf.data(), std::min(skip, buf.size())));
      if (!n.ok()) return;
      skip -= *n;
    }
    if (start == end) start = end = 0;
    const conn_mode mode = !r.keep_alive ? close_after : r.http10 ? keep10 : keep;
    const std::string& out = answers().hello[mode][r.head];
    if (!c.write(std::string_view(out)).ok()) return;
    if (!r.keep_alive) return finish(c);
  }
}

void serve(net::listener& ln, goro::wait_group& conns) {
  for (;;) {
    absl::StatusOr<net::conn> c = ln.accept();
    if (!c.ok()) {
      if (!net::is_closed(c.status())) {
        std::fprintf(stderr, "http_hello: accept: %s\n", c.status().ToString().c_str());
      }
      return;
    }
    conns.add(1);
    goro::go([c = std::move(*c), &conns]() mutable {
      serve_conn(std::move(c));
      conns.done();
    });
  }
}

// ---- the self-check client ---------------------------------------------------

struct http_response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (iequals(k, name)) return v;
    }
    return {};
  }
};

// A client connection with its read buffer (responses may arrive together).
struct client {
  net::conn c;
  std::string buf;
  goro::context ctx;

  absl::StatusOr<http_response> round_trip(std::string_view req) {
    if (absl::Status st = c.write(ctx, req); !st.ok()) return st;
    return read_response();
  }

  absl::StatusOr<http_response> read_response() {
    std::size_t blank;
    while ((blank = buf.find("\r\n\r\n")) == std::string::npos) {
      if (absl::Status st = fill(); !st.ok()) return st;
    }
    http_response r;
    std::string_view head(buf.data(), blank + 2);
    std::size_t eol = head.find("\r\n");
    const std::string_view line = head.substr(0, eol);
    if (line.substr(0, 9) != "HTTP/1.1 " || line.size() < 12) {
      return absl::DataLossError("bad status line: " + std::string(line));
    }
    r.status = std::stoi(std::string(line.substr(9, 3)));
    head.remove_prefix(eol + 2);
    while (!head.empty()) {
      eol = head.find("\r\n");
      const std::string_view h = head.substr(0, eol);
      head.remove_prefix(eol + 2);
      const std::size_t colon = h.find(':');
      if (colon == std::string_view::npos) return absl::DataLossError("bad header line");
      r.headers.emplace_back(std::string(h.substr(0, colon)),
                             std::string(trim(h.substr(colon + 1))));
    }
    buf.erase(0, blank + 4);
    const std::size_t len = std::stoul(r.header("Content-Length"));
    while (buf.size() < len) {
      if (absl::Status st = fill(); !st.ok()) return st;
    }
    r.body = buf.substr(0, len);
    buf.erase(0, len);
    return r;
  }

  absl::Status fill() {
    char tmp[4096];
    absl::StatusOr<std::size_t> n = c.read(ctx, tmp);
    if (!n.ok()) return n.status();
    buf.append(tmp, *n);
    return absl::OkStatus();
  }

  // After a final response the server closes: the next read is EOF.
  bool at_eof() {
    if (!buf.empty()) return false;
    return net::is_eof(fill());
  }
};

int self_check() {
  int failures = 0;
  auto fail = [&failures](const std::string& what) {
    std::fprintf(stderr, "http_hello: FAIL: %s\n", what.c_str());
    ++failures;
  };
  int requests = 0;
  goro::run([&] {
    absl::StatusOr<net::listener> ln = net::listen_tcp("127.0.0.1:0");
    if (!ln.ok()) return fail("listen: " + std::string(ln.status().ToString()));
    const net::address at = *ln->local_address();
    goro::wait_group conns, acceptor;
    acceptor.add(1);
    goro::go([&] {
      serve(*ln, conns);
      acceptor.done();
    });
    auto [ctx, cancel] = goro::with_timeout(goro::context::background(), 20s);
    auto connect = [&]() -> client {
      absl::StatusOr<net::conn> c = net::dial(ctx, at);
      if (!c.ok()) fail("dial: " + std::string(c.status().ToString()));
      return client{c.ok() ? std::move(*c) : net::conn(), {}, ctx};
    };
    auto expect_hello = [&](absl::StatusOr<http_response> r, bool keep, const std::string& what) {
      ++requests;
      if (!r.ok()) return fail(what + ": " + std::string(r.status().ToString()));
      if (r->status != 200) return fail(what + ": status " + std::to_string(r->status));
      if (r->body != kBody) return fail(what + ": body \"" + r->body + "\"");
      if (r->header("Content-Type").rfind("text/plain", 0) != 0) return fail(what + ": type");
      if ((r->header("Connection") == "close") == keep) return fail(what + ": Connection");
      if (r->header("Content-Length") != std::to_string(kBody.size())) {
        return fail(what + ": Content-Length");
      }
    };
    const std::string host = "Host: " + at.to_string() + "\r\n";

    // Keep-alive: ten requests on one connection, the last two sent together.
    {
      client c = connect();
      for (int i = 0; i < 8; ++i) {
        expect_hello(c.round_trip("GET /" + std::to_string(i) + " HTTP/1.1\r\n" + host + "\r\n"),
                     true, "keep-alive request " + std::to_string(i));
      }
      const std::string two = "GET /a HTTP/1.1\r\n" + host + "\r\nGET /b HTTP/1.1\r\n" + host +
                              "User-Agent: goro\r\n\r\n";
      (void)c.c.write(ctx, std::string_view(two));
      expect_hello(c.read_response(), true, "pipelined request 1");
      expect_hello(c.read_response(), true, "pipelined request 2");
      // A body announced by Content-Length is skipped, not taken for a request.
      expect_hello(
          c.round_trip("POST /form HTTP/1.1\r\n" + host + "Content-Length: 11\r\n\r\nhello=world"),
          true, "request with a body");
      expect_hello(c.round_trip("GET / HTTP/1.1\r\n" + host + "\r\n"), true, "after the body");
      // HEAD: the headers only.
      absl::StatusOr<http_response> h = [&]() -> absl::StatusOr<http_response> {
        if (absl::Status st = c.c.write(
                ctx, std::string_view("HEAD / HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"));
            !st.ok()) {
          return st;
        }
        while (c.buf.find("\r\n\r\n") == std::string::npos) {
          if (absl::Status st = c.fill(); !st.ok()) return st;
        }
        http_response r;
        r.status = c.buf.rfind("HTTP/1.1 200 OK\r\n", 0) == 0 ? 200 : 0;
        c.buf.erase(0, c.buf.find("\r\n\r\n") + 4);
        return r;
      }();
      ++requests;
      if (!h.ok() || h->status != 200) fail("HEAD");
      if (!c.at_eof()) fail("HEAD with Connection: close: the server did not close");
    }
    // Separate connections, each closed by the server after one answer.
    for (int i = 0; i < 5; ++i) {
      client c = connect();
      expect_hello(c.round_trip("GET /close HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"),
                   false, "Connection: close request " + std::to_string(i));
      if (!c.at_eof()) fail("Connection: close: the server did not close");
    }
    {
      // HTTP/1.0 closes by default, stays open when asked.
      client c = connect();
      expect_hello(c.round_trip("GET / HTTP/1.0\r\n\r\n"), false, "HTTP/1.0");
      if (!c.at_eof()) fail("HTTP/1.0: the server did not close");
      client k = connect();
      expect_hello(k.round_trip("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), true,
                   "HTTP/1.0 keep-alive");
      expect_hello(k.round_trip("GET / HTTP/1.0\r\n\r\n"), false, "HTTP/1.0 after keep-alive");
    }
    // Malformed requests: 400, then the server closes.
    for (const char* bad : {"BAD\r\n\r\n", "GET /\r\n\r\n", "GET / HTTP/2.0\r\n\r\n",
                            "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                            "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"}) {
      client c = connect();
      absl::StatusOr<http_response> r = c.round_trip(bad);
      ++requests;
      if (!r.ok() || r->status != 400) {
        fail("malformed request got " +
             (r.ok() ? std::to_string(r->status) : std::string(r.status().ToString())));
      } else if (!c.at_eof()) {
        fail("after 400 the server did not close");
      }
    }
    {
      client c = connect();
      absl::StatusOr<http_response> r = c.round_trip("POST / HTTP/1.1\r\n" + host +
                                                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
      ++requests;
      if (!r.ok() || r->status != 501) fail("chunked request not refused with 501");
    }
    // Many connections at once.
    std::atomic<int> parallel_failed{0};
    goro::wait_group wg;
    wg.add(20);
    for (int i = 0; i < 20; ++i) {
      goro::go([&] {
        client c = connect();
        for (int k = 0; k < 10; ++k) {
          absl::StatusOr<http_response> r = c.round_trip("GET / HTTP/1.1\r\n" + host + "\r\n");
          if (!r.ok() || r->status != 200 || r->body != kBody) parallel_failed.fetch_add(1);
        }
        wg.done();
      });
    }
    wg.wait();
    requests += 200;
    if (parallel_failed.load() != 0) {
      fail(std::to_string(parallel_failed.load()) + " of 200 parallel requests failed");
    }
    (void)ln->close();
    acceptor.wait();
    conns.wait();
    cancel();
    std::printf("http_hello: served %s; %d requests checked, %d failures\n", at.to_string().c_str(),
                requests, failures);
  });
  return failures == 0 ? 0 : 1;
}

int serve_forever(const char* addr) {
  int rc = 1;
  goro::run([&] {
    absl::StatusOr<net::listener> ln = net::listen_tcp(addr);
    if (!ln.ok()) {
      std::fprintf(stderr, "http_hello: %s\n", ln.status().ToString().c_str());
      return;
    }
    std::printf("http_hello: listening on http://%s/ (%d processors)\n",
                ln->local_address()->to_string().c_str(), goro::maxprocs());
    std::fflush(stdout);
    goro::wait_group conns;
    serve(*ln, conns);
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
