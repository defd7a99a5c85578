// src/sync/group.cpp — goro::group (errgroup).
#include <stdexcept>

#include "absl/strings/str_format.h"
#include "goro/group.hpp"
#include "goro/runtime.hpp"
#include "sched/sched.hpp"

namespace goro {

group::group(const context& parent) {
  auto [c, cancel] = with_cancel_cause(parent);
  ctx_ = std::move(c);
  cancel_ = std::move(cancel);
}

group::~group() {
  // As std::jthread: ask them to stop, then join (they refer to *this). A
  // fiber blocked on ctx().done() would otherwise keep the destructor waiting.
  cancel_(absl::OkStatus());
  wg_.wait();
}

void group::set_limit(std::int64_t n) {
  if (const std::int64_t a = active_.load(std::memory_order_acquire); a != 0) {
    throw std::logic_error(absl::StrFormat(
        "goro::group::set_limit: the limit changed while %d fibers of the group are running", a));
  }
  limit_ = n < 0 ? nullptr : std::make_unique<semaphore>(n);
}

bool group::go_impl(body f, bool block, const std::source_location& where) {
  if (limit_ != nullptr) {
    if (limit_->size() == 0) {
      if (!block) return false;
      throw std::logic_error("goro::group::go: the limit is 0, no fiber can ever start");
    }
    if (block) {
      limit_->acquire(1);
    } else if (!limit_->try_acquire(1)) {
      return false;
    }
  }
  active_.fetch_add(1, std::memory_order_relaxed);
  wg_.add(1);
  try {
    detail::spawn(detail::task([this, f = std::move(f)]() mutable { run(f); }), where);
  } catch (...) {
    active_.fetch_sub(1, std::memory_order_relaxed);
    if (limit_ != nullptr) limit_->release(1);
    wg_.done();
    throw;
  }
  return true;
}

void group::run(body& f) {
  struct finish {
    group* g;
    ~finish() {
      // The limit first: once active_ drops, set_limit may replace it.
      if (g->limit_ != nullptr) g->limit_->release(1);
      g->active_.fetch_sub(1, std::memory_order_release);
      g->wg_.done();  // the last access to the group
    }
  } fin{this};
  try {
    absl::Status st = std::move(f)();
    if (!st.ok()) fail(std::move(st), nullptr);
  } catch (const detail::forced_unwind&) {
    throw;  // runtime exit: let the unwinding finish
  } catch (const std::exception& e) {
    fail(absl::UnknownError(absl::StrFormat("goro::group: a fiber threw: %s", e.what())),
         std::current_exception());
  } catch (...) {
    fail(absl::UnknownError("goro::group: a fiber threw a non-standard exception"),
         std::current_exception());
  }
}

void group::fail(absl::Status st, std::exception_ptr e) {
  {
    std::lock_guard g(mu_);
    if (failed_) return;
    failed_ = true;
    err_ = st;
    exc_ = std::move(e);
  }
  cancel_(std::move(st));
}

absl::Status group::wait() {
  wg_.wait();
  absl::Status err;
  std::exception_ptr exc;
  {
    std::lock_guard g(mu_);
    err = err_;
    exc = exc_;
  }
  cancel_(err);
  if (exc) std::rethrow_exception(exc);
  return err;
}

}  // namespace goro
