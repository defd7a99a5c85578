#!/usr/bin/env bash
# Tests tools/goro-gdb.py: runs test/gdb/gdb_target under gdb to its
# breakpoint in gdb_stop_here(), where three fibers are parked (in
# parked_in_recv, parked_in_lock and parked_in_sleep) and the main fiber is
# running, and checks `goro fibers` and `goro bt`: on the live process (the
# registers are swapped), then on a core file of it written with gcore (gdb
# cannot write a core's registers: the script unwinds into the fiber instead).
# Also checks that the registers are restored, that the program then runs to
# a normal exit, and the "no goro runtime is running" message before run()
# and after it.
#
# Usage: run.sh GORO_GDB_PY GDB_TARGET [SANITIZERS]
# SANITIZERS is meson's b_sanitize option; the test is skipped unless it is
# empty or "none". gdb's output is printed when a check fails, or always
# with GORO_GDB_TEST_VERBOSE=1. Exits 77 (skipped) when gdb is not
# installed or may not trace processes.
set -uo pipefail
script=$1
target=$2
sanitizers=${3:-none}

if [[ $sanitizers != none ]]; then
  echo "built with -fsanitize=$sanitizers: skipped"
  exit 77
fi
if ! command -v gdb >/dev/null 2>&1; then
  echo "gdb is not installed: skipped"
  exit 77
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
unset DEBUGINFOD_URLS  # never download debug information

# gdb in batch mode with the script loaded; the output goes to stdout.
# GORO_DEBUG=noguardregions: gdb's gcore (13) stops copying a mapping at the
# first page it cannot read, and a slab with guard regions (Linux 6.13+) has
# one below every stack, so the core would hold no fiber stacks. (Kernel core
# dumps write guard pages as zeros and keep the rest; the live checks pass
# either way.)
run_gdb() {
  GORO_DEBUG=noguardregions \
  timeout 120 gdb -batch -nx -iex 'set pagination off' -iex 'set width 0' \
    -iex 'set disable-randomization off' -ex "source $script" "$@" 2>&1
}

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# The lines of a gdb log between `echo @@ NAME` and the next @@ marker.
section() {
  awk -v name="$2" '/^@@ / { on = ($2 == name); next } on' <<<"$1"
}

# expect LOG SECTION ERE DESCRIPTION: the section has a line matching ERE.
# (No pipe into grep -q: with pipefail, its early exit could fail the pipe.)
expect() {
  grep -Eq -- "$3" <<<"$(section "$1" "$2")" || fail "$4 (no line matching /$3/ in section $2)"
}
# expect_not LOG SECTION ERE DESCRIPTION: no line of the section matches ERE.
expect_not() {
  if grep -Eq -- "$3" <<<"$(section "$1" "$2")"; then
    fail "$4 (a line matches /$3/ in section $2)"
  fi
}

# Common checks of the fiber listing and the parked fibers' backtraces.
check_fibers() {
  local log=$1 ids recv lock sleep main
  ids=$(section "$log" ids)
  recv=$(sed -n 's/^recv=//p' <<<"$ids")
  lock=$(sed -n 's/^lock=//p' <<<"$ids")
  sleep=$(sed -n 's/^sleep=//p' <<<"$ids")
  main=$(sed -n 's/^main=//p' <<<"$ids")
  if [[ -z $recv || -z $lock || -z $sleep || -z $main ]]; then
    fail "could not read the fiber ids"
    return
  fi
  local site='spawned at .*gdb_target\.cpp:[0-9]+ in '
  expect "$log" fibers "^goro: 4 started fibers, maxprocs 2$" "the listing's header"
  expect "$log" fibers "^[* ] +$main +running on thread [0-9]+ \(main\) +started by goro::run$" \
    "the main fiber is listed as running"
  expect "$log" fibers "^ +$recv +chan receive 0x[0-9a-f]+ +$site" "the receiver is listed"
  expect "$log" fibers "^ +$lock +mutex 0x[0-9a-f]+ +$site" "the locker is listed"
  expect "$log" fibers "^ +$sleep +sleep +$site" "the sleeper is listed"

  expect "$log" bt_recv "^fiber $recv \[chan receive 0x[0-9a-f]+\]: $site" "goro bt's header"
  expect "$log" bt_recv "^#[0-9]+ .*parked_in_recv" "the receiver's backtrace"
  expect "$log" bt_recv "^#[0-9]+ .*fiber_entry" "the receiver's backtrace reaches fiber_entry"
  expect_not "$log" bt_recv "parked_in_(lock|sleep)|gdb_stop_here" "the receiver's backtrace"
  expect "$log" bt_lock "^#[0-9]+ .*parked_in_lock" "the locker's backtrace"
  expect "$log" bt_lock "^#[0-9]+ .*goro::mutex::lock" "the locker's backtrace"
  expect_not "$log" bt_lock "parked_in_(recv|sleep)|gdb_stop_here" "the locker's backtrace"
  expect "$log" bt_sleep "^#[0-9]+ .*parked_in_sleep" "the sleeper's backtrace"
  expect "$log" bt_main "^fiber $main is running on worker thread [0-9]+" "goro bt of main"
  expect "$log" bt_main "^#0 +gdb_stop_here" "the main fiber's backtrace"
  expect "$log" bt_none "^no started fiber has id 999999 " "goro bt of an unknown fiber"
  if grep -Eq "Python Exception|Traceback|Error occurred in Python" <<<"$log"; then
    fail "a Python error"
  fi
}

# The commands shared by both sessions, with markers for section().
common=(
  -ex 'echo @@ ids\n'
  -ex 'printf "recv=%d\nlock=%d\n", g_recv_fiber, g_lock_fiber'
  -ex 'printf "sleep=%d\nmain=%d\n", g_sleep_fiber, g_main_fiber'
  -ex 'echo @@ fibers\n' -ex 'goro fibers'
  -ex 'echo @@ bt_recv\n' -ex 'goro bt g_recv_fiber'
  -ex 'echo @@ bt_lock\n' -ex 'goro bt g_lock_fiber'
  -ex 'echo @@ bt_sleep\n' -ex 'goro bt g_sleep_fiber'
  -ex 'echo @@ bt_main\n' -ex 'goro bt g_main_fiber'
  -ex 'echo @@ bt_none\n' -ex 'goro bt 999999'
)

# ---- The live process.
# MALLOC_ARENA_MAX: no 64 MiB malloc arena per thread in the core file.
# shellcheck disable=SC2016  # the $names are gdb's
live=$(run_gdb \
  -ex 'set environment MALLOC_ARENA_MAX=1' \
  -ex 'echo @@ before\n' -ex 'goro fibers' \
  -ex 'break gdb_stop_here' -ex 'break gdb_after_run' \
  -ex 'echo @@ run\n' -ex 'run' \
  -ex 'set $rsp0 = $rsp' -ex 'set $rip0 = $rip' -ex 'set $rbp0 = $rbp' -ex 'set $rbx0 = $rbx' \
  -ex 'set $r12_0 = $r12' -ex 'set $r13_0 = $r13' -ex 'set $r14_0 = $r14' -ex 'set $r15_0 = $r15' \
  "${common[@]}" \
  -ex 'echo @@ bt_all\n' -ex 'goro bt all' \
  -ex 'echo @@ restored\n' \
  -ex 'printf "registers restored: %d\n", $rsp == $rsp0 && $rip == $rip0 && $rbp == $rbp0' \
  -ex 'printf "registers restored: %d\n", $rbx == $rbx0 && $r12 == $r12_0 && $r13 == $r13_0' \
  -ex 'printf "registers restored: %d\n", $r14 == $r14_0 && $r15 == $r15_0' \
  -ex 'bt 1' \
  -ex "gcore $scratch/core" \
  -ex 'echo @@ after\n' -ex 'continue' -ex 'goro fibers' \
  -ex 'echo @@ exit\n' -ex 'continue' \
  "$target")

if grep -Eq 'ptrace: Operation not permitted|Could not trace the inferior process' <<<"$live"; then
  echo "gdb may not trace processes here: skipped"
  echo "$live"
  exit 77
fi

live_failures_before=$failures
expect "$live" before "^no goro runtime is running" "goro fibers before the program runs"
expect "$live" run "hit Breakpoint 1, gdb_stop_here" "the breakpoint in gdb_stop_here"
check_fibers "$live"
for name in recv lock sleep; do
  expect "$live" bt_all "^#[0-9]+ .*parked_in_$name" "goro bt all shows parked_in_$name"
done
expect "$live" restored "^registers restored: 1$" "the registers are restored"
expect_not "$live" restored "^registers restored: 0$" "the registers are restored"
expect "$live" restored "^#0 +gdb_stop_here" "the thread's own backtrace afterwards"
expect "$live" after "hit Breakpoint 2, gdb_after_run" "the breakpoint in gdb_after_run"
expect "$live" after "^no goro runtime is running$" "goro fibers after run() returned"
expect "$live" exit "^gdb_target: done$" "the program finishes its work"
expect "$live" exit "exited normally" "the program exits normally"
if ((failures > live_failures_before)) || [[ ${GORO_GDB_TEST_VERBOSE:-} = 1 ]]; then
  echo "---- gdb output (live process) ----"
  echo "$live"
fi

# ---- The core file.
core_failures_before=$failures
if [[ -s $scratch/core ]]; then
  core=$(run_gdb "${common[@]}" "$target" "$scratch/core")
  check_fibers "$core"
  expect "$core" bt_recv "are numbered from #1" "the core file's backtraces say where they start"
  if ((failures > core_failures_before)) || [[ ${GORO_GDB_TEST_VERBOSE:-} = 1 ]]; then
    echo "---- gdb output (core file) ----"
    echo "$core"
  fi
else
  fail "gcore wrote no core file"
fi

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "goro-gdb.py: all checks passed"
