// A program that uses goro the way an outside project does: through the
// installed (or uninstalled) pkg-config file, nothing else.
#include <goro/goro.hpp>

#include <atomic>
#include <cstdio>

int main() {
  std::atomic<int> n{0};
  goro::run([&] {
    goro::wait_group wg;
    for (int i = 0; i < 100; ++i) {
      wg.add(1);
      goro::go([&] {
        n.fetch_add(1);
        wg.done();
      });
    }
    wg.wait();
  });
  std::printf("consumer: %d fibers ran\n", n.load());
  return n.load() == 100 ? 0 : 1;
}
