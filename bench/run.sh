#!/usr/bin/env bash
# Runs the goro C++ benchmarks next to their Go twins (bench/go/<name>) and
# prints a comparison table. Lower is better for every value; the ratio
# column is goro/Go, so below 1.000 means goro is faster or leaner.
#
# Usage: bench/run.sh [BUILD_DIR]      (default: build)
#
# The C++ benchmarks are expected as BUILD_DIR/bench/bench_<name>; the Go
# twins are built into BUILD_DIR/bench-go/. Every program prints lines
# "BENCH <name> <value> <unit>", which are paired by name. GOMAXPROCS
# (default 2) applies to the Go programs and may be read by the C++ ones.
# http_hello is the exception: bench/http.sh runs examples/http_hello and
# bench/go/http_hello under wrk (skipped if wrk is missing).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd)
go_out=$build_dir/bench-go

# Build the Go twins. A private build cache keeps this working where HOME
# is unset (e.g. as root in a fresh clone).
mkdir -p "$go_out"
export GOFLAGS=-mod=mod
export GOCACHE=${GOCACHE:-$go_out/cache}
echo "building Go benchmarks into $go_out" >&2
# One package at a time: a twin that cannot build (e.g. bench/go/sync
# without Debian's golang-golang-x-sync-dev) is skipped, not fatal.
for dir in "$root"/bench/go/*/; do
    pkg=${dir%/}
    pkg=${pkg##*/}
    [[ -f $dir/main.go ]] || continue
    (cd "$root/bench/go" && go build -o "$go_out/" "./$pkg") ||
        echo "warning: Go twin $pkg did not build; it will be skipped" >&2
done

export GOMAXPROCS=${GOMAXPROCS:-2}

# Benchmarks to run: the standard set plus any further C++ benchmark that
# has a Go twin.
names=(spawn_join yield parked skynet)
for bin in "$build_dir"/bench/bench_*; do
    [[ -f $bin && -x $bin ]] || continue
    name=${bin##*/bench_}
    [[ -d $root/bench/go/$name ]] || continue
    [[ " ${names[*]} " == *" $name "* ]] || names+=("$name")
done

# run_bench PROGRAM [ARGS...]: runs PROGRAM and prints its BENCH lines as
# "<name> <value> <unit>". Fails if the program fails.
run_bench() {
    local out
    out=$("$@") || return 1
    awk '$1 == "BENCH" && NF >= 4 { print $2, $3, $4 }' <<<"$out"
}

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}"
echo "go: $(go version)"
echo "GOMAXPROCS=$GOMAXPROCS"
echo

rows=()
notes=()
# HTTP under wrk (bench/http.sh): examples/http_hello beside its Go twin.
if command -v wrk >/dev/null; then
    names+=(http_hello)
else
    notes+=("http_hello: skipped, wrk not installed")
fi
for name in "${names[@]}"; do
    cpp_bin=$build_dir/bench/bench_$name
    go_bin=$go_out/$name
    cpp_cmd=("$cpp_bin") go_cmd=("$go_bin")
    if [[ $name == http_hello ]]; then # servers, measured by wrk
        cpp_bin=$build_dir/examples/http_hello
        cpp_cmd=("$root/bench/http.sh" "$cpp_bin" --listen)
        go_cmd=("$root/bench/http.sh" "$go_bin" -listen)
    fi
    if [[ ! -x $cpp_bin ]]; then
        notes+=("$name: skipped, C++ benchmark bench_$name not built")
        continue
    fi
    if [[ ! -x $go_bin ]]; then
        notes+=("$name: skipped, Go twin not built")
        continue
    fi

    declare -A cpp_val=() cpp_unit=() go_val=() go_unit=()
    order=()
    echo "running $name (goro)" >&2
    if cpp_res=$(run_bench "${cpp_cmd[@]}"); then
        while read -r k v u; do
            [[ -n $k ]] || continue
            [[ -n ${cpp_val[$k]+x} || -n ${go_val[$k]+x} ]] || order+=("$k")
            cpp_val[$k]=$v cpp_unit[$k]=$u
        done <<<"$cpp_res"
    else
        notes+=("$name: C++ benchmark failed")
    fi
    echo "running $name (Go)" >&2
    if go_res=$(run_bench "${go_cmd[@]}"); then
        while read -r k v u; do
            [[ -n $k ]] || continue
            [[ -n ${cpp_val[$k]+x} || -n ${go_val[$k]+x} ]] || order+=("$k")
            go_val[$k]=$v go_unit[$k]=$u
        done <<<"$go_res"
    else
        notes+=("$name: Go benchmark failed")
    fi
    if ((${#order[@]} == 0)); then
        notes+=("$name: no BENCH results")
    fi

    for k in "${order[@]}"; do
        cv=${cpp_val[$k]:--} gv=${go_val[$k]:--}
        cu=${cpp_unit[$k]:-} gu=${go_unit[$k]:-}
        unit=${cu:-$gu}
        ratio=-
        if [[ $cv != - && $gv != - ]]; then
            if [[ $cu == "$gu" ]]; then
                ratio=$(awk -v a="$cv" -v b="$gv" \
                    'BEGIN { if (b + 0 == 0) print "-"; else printf "%.3f", a / b }')
            else
                unit="$cu|$gu"
                notes+=("$k: unit mismatch (goro $cu, Go $gu), no ratio")
            fi
        fi
        rows+=("$k $cv $gv $unit $ratio")
    done
    unset cpp_val cpp_unit go_val go_unit
done

fmt='%-20s %14s %14s %-12s %8s\n'
# shellcheck disable=SC2059
printf "$fmt" benchmark goro go unit goro/go
for row in "${rows[@]}"; do
    # shellcheck disable=SC2059,SC2086
    printf "$fmt" $row
done
if ((${#notes[@]} > 0)); then
    echo
    for n in "${notes[@]}"; do
        echo "note: $n"
    done
fi
exit 0
