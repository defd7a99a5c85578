module goro/bench/go

go 1.19

// x/sync (semaphore, errgroup) from Debian's golang-golang-x-sync-dev: the
// benchmarks build offline.
require golang.org/x/sync v0.1.0

replace golang.org/x/sync => /usr/share/gocode/src/golang.org/x/sync
