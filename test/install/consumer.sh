#!/usr/bin/env bash
# Builds and runs test/install/consumer.cpp against goro's pkg-config file:
# first the build directory's uninstalled one, then a `meson install` into a
# scratch prefix. Usage: consumer.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
cxx=${CXX:-c++}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== uninstalled: $build/meson-uninstalled/goro-uninstalled.pc"
# shellcheck disable=SC2046
PKG_CONFIG_PATH=$build/meson-uninstalled "$cxx" -std=c++20 "$src/test/install/consumer.cpp" \
  -o "$scratch/consumer-uninstalled" $(PKG_CONFIG_PATH=$build/meson-uninstalled pkg-config --cflags --libs goro)
LD_LIBRARY_PATH=$build "$scratch/consumer-uninstalled"

echo "== installed into a scratch prefix"
meson install -C "$build" --destdir "$scratch/root" --quiet
prefix=$(meson introspect "$build" --buildoptions | python3 -c \
  'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
libdir=$(meson introspect "$build" --buildoptions | python3 -c \
  'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"))')
root=$scratch/root$prefix
[[ $libdir = /* ]] || libdir=$prefix/$libdir
pcdir=$scratch/root$libdir/pkgconfig
# Relocate the .pc file's prefix to the scratch root.
export PKG_CONFIG_PATH=$pcdir
flags=$(pkg-config --define-variable=prefix="$root" --cflags --libs goro)
# shellcheck disable=SC2086
"$cxx" -std=c++20 "$src/test/install/consumer.cpp" -o "$scratch/consumer" $flags
LD_LIBRARY_PATH=$scratch/root$libdir "$scratch/consumer"
