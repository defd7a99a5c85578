#!/usr/bin/env bash
# bootstrap.sh — Quick start, step 1, on Debian 12: install what is missing,
# configure and build goro in ./build, and run the flagship example.
#   ./bootstrap.sh            then:   meson test -C build
set -euo pipefail
cd "$(dirname "$0")"

packages=(g++ meson ninja-build pkg-config libboost-context-dev libboost-test-dev libabsl-dev gdb)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi

[[ -f build/build.ninja ]] || meson setup build
meson compile -C build
./build/examples/hello
