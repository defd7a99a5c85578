// src/sched/maxprocs.cpp — the default number of processors (GOMAXPROCS).
//
// Order, as Go 1.25 (runtime: "container-aware GOMAXPROCS"):
//   1. $GOMAXPROCS, if a positive integer;
//   2. else the CPUs in this thread's affinity mask (sched_getaffinity),
//   3. lowered to the cgroup CPU quota rounded up, but a quota never lowers it
//      below 2 (a fractional quota like 0.5 still gets two processors: a
//      single one would serialize everything for little throttling benefit).
// cgroup v2 (`cpu.max`: "<quota> <period>" or "max <period>") is read at the
// process's own cgroup path from /proc/self/cgroup; cgroup v1
// (cpu.cfs_quota_us / cpu.cfs_period_us) as a fallback.
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

namespace goro::detail {
namespace {

std::optional<double> read_v2_quota() {
  std::ifstream cg("/proc/self/cgroup");
  std::string line, path = "/";
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  for (std::string dir = path;; dir = dir.substr(0, dir.rfind('/'))) {
    std::ifstream f("/sys/fs/cgroup" + (dir == "/" ? std::string() : dir) + "/cpu.max");
    std::string quota;
    double period = 0;
    if (f >> quota >> period && quota != "max" && period > 0) {
      return std::strtod(quota.c_str(), nullptr) / period;
    }
    if (dir.empty() || dir == "/") break;
  }
  return std::nullopt;
}

std::optional<double> read_v1_quota() {
  std::ifstream q("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  std::ifstream p("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  double quota = 0, period = 0;
  if (q >> quota && p >> period && quota > 0 && period > 0) return quota / period;
  return std::nullopt;
}

}  // namespace

int default_maxprocs() {
  if (const char* env = std::getenv("GOMAXPROCS")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n <= 1 << 16) return static_cast<int>(n);
  }
  int cpus = 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  std::optional<double> quota = read_v2_quota();
  if (!quota) quota = read_v1_quota();
  if (quota) {
    int limit = std::max(2, static_cast<int>(std::ceil(*quota)));
    cpus = std::min(cpus, limit);
  }
  return cpus;
}

}  // namespace goro::detail
