// Package benchutil holds the small helpers shared by the Go twins of the
// goro C++ benchmarks: repetition/median handling and the BENCH output line.
package benchutil

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Median returns the median of xs (the mean of the two middle values for an
// even count). It does not modify xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// MedianDuration runs f reps times and returns the median of the durations
// it reports, printing each run so the output shows the spread.
func MedianDuration(name string, reps int, f func() time.Duration) time.Duration {
	if reps < 1 {
		reps = 1
	}
	xs := make([]float64, reps)
	for i := range xs {
		d := f()
		fmt.Printf("# %s run %d: %.6f s\n", name, i+1, d.Seconds())
		xs[i] = float64(d)
	}
	return time.Duration(Median(xs))
}

// Report prints one result in the shared output protocol:
// "BENCH <name> <value> <unit>" (lower is better).
func Report(name string, value float64, unit string) {
	fmt.Printf("BENCH %s %.6g %s\n", name, value, unit)
}

// RSSKiB returns the resident set size of the current process in KiB, read
// from the VmRSS line of /proc/self/status.
func RSSKiB() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, "VmRSS:"))
		if len(fields) == 0 {
			break
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("VmRSS not found in /proc/self/status")
}
