#!/usr/bin/env bash
# Runs one "hello" HTTP server under wrk and prints the result in the
# benchmarks' protocol, so bench/run.sh can pair the goro server
# (examples/http_hello) with its Go twin (bench/go/http_hello):
#
#   BENCH http_hello      <1e9 / requests per second> ns/req   (lower is better)
#   BENCH http_hello_p99  <99th percentile latency>   us
#
# Usage: bench/http.sh SERVER LISTEN_FLAG   e.g. build/examples/http_hello --listen
#
# The server is started with `LISTEN_FLAG 127.0.0.1:PORT` on a free port and
# gets GOMAXPROCS from the environment (goro reads it too); wrk runs
# `-t2 -c100 -d5s --latency` (WRK_ARGS overrides). The server is killed on
# exit, whatever happens.
set -euo pipefail

if (($# != 2)); then
    echo "usage: $0 SERVER LISTEN_FLAG" >&2
    exit 2
fi
server=$1
listen_flag=$2
wrk_args=${WRK_ARGS:--t2 -c100 -d5s}

command -v wrk >/dev/null || {
    echo "http.sh: wrk not installed" >&2
    exit 1
}

pid=
log=$(mktemp)
cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start the server on a free port: try a few random ones (a port taken
# meanwhile makes the server exit, and we try the next).
port=
for _ in 1 2 3 4 5 6 7 8; do
    p=$((20000 + RANDOM % 30000))
    listening "$p" && continue
    "$server" "$listen_flag" "127.0.0.1:$p" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        listening "$p" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null && listening "$p"; then
        port=$p
        break
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
done
if [[ -z $port ]]; then
    echo "http.sh: $server did not start listening:" >&2
    cat "$log" >&2
    exit 1
fi

# A request first, to check the server answers as it should.
if command -v curl >/dev/null; then
    body=$(curl -sf --max-time 5 "http://127.0.0.1:$port/") || {
        echo "http.sh: $server: request failed" >&2
        exit 1
    }
    [[ $body == "Hello, World!" ]] || {
        echo "http.sh: $server: unexpected body: $body" >&2
        exit 1
    }
fi

# shellcheck disable=SC2086
out=$(wrk $wrk_args --latency "http://127.0.0.1:$port/")
echo "$out" | sed 's/^/# /'
if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "http.sh: $server: wrk saw errors" >&2
    exit 1
fi
kill -0 "$pid" 2>/dev/null || {
    echo "http.sh: $server died under load:" >&2
    cat "$log" >&2
    exit 1
}

rps=$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")
# "99%  1.23ms": wrk prints us, ms or s.
p99=$(awk '$1 == "99%" {
    v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    f = (u == "us") ? 1 : (u == "ms") ? 1e3 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : -1
    if (f > 0) printf "%.1f", v * f
}' <<<"$out")
if [[ -z $rps || -z $p99 ]]; then
    echo "http.sh: could not parse wrk's output" >&2
    exit 1
fi
printf '# %s: %s requests/s, p99 %s us\n' "${server##*/}" "$rps" "$p99"
awk -v r="$rps" 'BEGIN { printf "BENCH http_hello %.6g ns/req\n", 1e9 / r }'
echo "BENCH http_hello_p99 $p99 us"
