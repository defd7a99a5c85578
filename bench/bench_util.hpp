// bench/bench_util.hpp — what every C++ benchmark shares with its Go twin:
// median of repetitions, the `BENCH <name> <value> <unit>` output line, RSS.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace bench {

using clock = std::chrono::steady_clock;

// Runs `once` (returning seconds) `reps` times; prints each and returns the
// median.
template <class F>
double median_seconds(const char* name, int reps, F once) {
  std::vector<double> v;
  for (int i = 0; i < reps; ++i) {
    double s = once();
    std::printf("# %s run %d: %.6f s\n", name, i + 1, s);
    v.push_back(s);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

inline void report(const char* name, double value, const char* unit) {
  std::printf("BENCH %s %.6g %s\n", name, value, unit);
  std::fflush(stdout);
}

inline double seconds_since(clock::time_point t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}

// Resident set size of this process in KiB (VmRSS).
inline long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// `-n N` style integer flag, with a default.
inline long flag(int argc, char** argv, const char* name, long def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  }
  return def;
}

}  // namespace bench
