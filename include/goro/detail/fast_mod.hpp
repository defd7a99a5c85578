// goro/detail/fast_mod.hpp — n % d for a divisor fixed at construction,
// without a division instruction.
//
// A lock-free channel maps an ever-growing position to a slot with
// `pos % cap`. A 64-bit `div` costs 40-90 cycles on common x86 cores (it
// was a third of a buffered send or receive), and a channel's capacity is
// whatever the user chose, not a power of two. So the quotient is computed
// as Granlund and Montgomery's multiply-high by a rounded-up reciprocal
// ("Division by invariant integers using multiplication", 1994, fig. 4.1),
// exact for every 64-bit n, and a power of two is a mask.
#pragma once

#include <bit>
#include <cstdint>

namespace goro::detail {

__extension__ using uint128_t = unsigned __int128;  // GCC and Clang, 64-bit targets

class fast_mod {
 public:
  explicit fast_mod(std::uint64_t d) : d_(d == 0 ? 1 : d) {
    if (std::has_single_bit(d_)) {
      mask_ = d_ - 1;
      pow2_ = true;
      return;
    }
    // l = ceil(log2 d) (d is not a power of two, so d >= 3 and 2 <= l <= 64);
    // m = floor(2^64 * (2^l - d) / d) + 1, which fits in 64 bits.
    const int l = 64 - std::countl_zero(d_);
    const uint128_t two_l = static_cast<uint128_t>(1) << l;
    magic_ = static_cast<std::uint64_t>(((two_l - d_) << 64) / d_) + 1;
    shift_ = l - 1;
  }

  std::uint64_t div(std::uint64_t n) const {
    if (pow2_) return n >> std::countr_zero(d_);
    const auto t = static_cast<std::uint64_t>((static_cast<uint128_t>(magic_) * n) >> 64);
    return (t + ((n - t) >> 1)) >> shift_;
  }

  std::uint64_t mod(std::uint64_t n) const {
    if (pow2_) return n & mask_;
    return n - div(n) * d_;
  }

 private:
  std::uint64_t d_;
  std::uint64_t magic_ = 0;
  std::uint64_t mask_ = 0;
  int shift_ = 0;
  bool pow2_ = false;
};

}  // namespace goro::detail
