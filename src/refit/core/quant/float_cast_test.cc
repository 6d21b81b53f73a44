#include "refit/core/quant/float_cast.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "refit/core/quant/element_access.h"

namespace refit::quant {
namespace {

float F(uint32_t bits) { return F32FromBits(bits); }

// ---------------------------------------------------------------------------
// Hand-computed vectors.

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBf16(-2.0f), 0xC000);
  // pi = 0x40490FDB: the dropped half 0x0FDB is below 0x8000.
  EXPECT_EQ(F32ToBf16(F(0x40490FDB)), 0x4049);
  // Exact ties: 0x3F80|8000 lies halfway between 0x3F80 (even) and 0x3F81.
  EXPECT_EQ(F32ToBf16(F(0x3F808000)), 0x3F80);
  // 0x3F81|8000 lies halfway between 0x3F81 (odd) and 0x3F82 (even).
  EXPECT_EQ(F32ToBf16(F(0x3F818000)), 0x3F82);
  // Just off the tie.
  EXPECT_EQ(F32ToBf16(F(0x3F808001)), 0x3F81);
  EXPECT_EQ(F32ToBf16(F(0x3F807FFF)), 0x3F80);
  EXPECT_EQ(F32ToBf16(F(0xBF818000)), 0xBF82);
}

TEST(Bf16Test, SpecialValues) {
  EXPECT_EQ(F32ToBf16(0.0f), 0x0000);
  EXPECT_EQ(F32ToBf16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(F32ToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // FLT_MAX rounds up to inf; 0x7F7F|8000 is a tie to the even inf (0x7F80).
  EXPECT_EQ(F32ToBf16(F(0x7F7FFFFF)), 0x7F80);
  EXPECT_EQ(F32ToBf16(F(0x7F7F8000)), 0x7F80);
  EXPECT_EQ(F32ToBf16(F(0x7F7F7FFF)), 0x7F7F);
  // F32 subnormals round like any value: 0x0000|8000 is a tie to 0.
  EXPECT_EQ(F32ToBf16(F(0x00008000)), 0x0000);
  EXPECT_EQ(F32ToBf16(F(0x00018000)), 0x0002);
  EXPECT_EQ(F32ToBf16(F(0x00010000)), 0x0001);
  // Every NaN becomes the canonical 0x7FC0, whatever its sign or payload.
  EXPECT_EQ(F32ToBf16(F(0x7FC00000)), 0x7FC0);
  EXPECT_EQ(F32ToBf16(F(0xFFC00000)), 0x7FC0);
  EXPECT_EQ(F32ToBf16(F(0x7F800001)), 0x7FC0);
  EXPECT_EQ(F32ToBf16(F(0x7FFFFFFF)), 0x7FC0);
}

TEST(Bf16Test, WideningIsExact) {
  EXPECT_EQ(F32Bits(Bf16ToF32(0x3F80)), 0x3F800000u);
  EXPECT_EQ(F32Bits(Bf16ToF32(0x0001)), 0x00010000u);
  EXPECT_EQ(F32Bits(Bf16ToF32(0xFF80)), 0xFF800000u);
  EXPECT_EQ(F32Bits(Bf16ToF32(0x7FC1)), 0x7FC10000u);
}

TEST(F16Test, NormalValuesAndTies) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToF16(0.5f), 0x3800);
  EXPECT_EQ(F32ToF16(0.1f), 0x2E66);  // 0.0999755859375
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  // 1 + 2^-11 is halfway between 0x3C00 (even) and 0x3C01.
  EXPECT_EQ(F32ToF16(F(0x3F801000)), 0x3C00);
  // 1 + 3 * 2^-11 is halfway between 0x3C01 and 0x3C02 (even).
  EXPECT_EQ(F32ToF16(F(0x3F803000)), 0x3C02);
  EXPECT_EQ(F32ToF16(F(0x3F801001)), 0x3C01);
}

TEST(F16Test, SubnormalsOverflowAndNaN) {
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);  // tie -> even 0
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -26)), 0x0001);  // 0.75 units
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie -> 2
  EXPECT_EQ(F32ToF16(std::ldexp(5.0f, -25)), 0x0002);  // 2.5 units: tie -> 2
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -24)), 0x8001);
  EXPECT_EQ(F32ToF16(std::ldexp(1023.0f, -24)), 0x03FF);  // largest subnormal
  // 1023.5 units: tie between 0x03FF (odd) and the smallest normal 0x0400.
  EXPECT_EQ(F32ToF16(std::ldexp(2047.0f, -25)), 0x0400);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(F32ToF16(F(0x00000001)), 0x0000);  // F32 subnormal
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  // 65520 is halfway between 65504 (0x7BFF, odd) and 65536 (inf): -> inf.
  EXPECT_EQ(F32ToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);
  EXPECT_EQ(F32ToF16(1e5f), 0x7C00);
  EXPECT_EQ(F32ToF16(-1e5f), 0xFC00);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xFC00);
  // NaN -> 0x7E00, keeping the sign bit (PyTorch c10/util/Half.h).
  EXPECT_EQ(F32ToF16(F(0x7FC00000)), 0x7E00);
  EXPECT_EQ(F32ToF16(F(0x7F800001)), 0x7E00);
  EXPECT_EQ(F32ToF16(F(0xFFC00000)), 0xFE00);
}

TEST(F16Test, WideningIsExact) {
  EXPECT_EQ(F32Bits(F16ToF32(0x3C00)), 0x3F800000u);
  EXPECT_EQ(F32Bits(F16ToF32(0x0001)), 0x33800000u);  // 2^-24
  EXPECT_EQ(F32Bits(F16ToF32(0x03FF)), F32Bits(std::ldexp(1023.0f, -24)));
  EXPECT_EQ(F16ToF32(0x7BFF), 65504.0f);
  EXPECT_EQ(F32Bits(F16ToF32(0x8000)), 0x80000000u);
  EXPECT_EQ(F32Bits(F16ToF32(0xFC00)), 0xFF800000u);
  EXPECT_EQ(F32Bits(F16ToF32(0x7E00)), 0x7FC00000u);
}

TEST(E4M3Test, NormalValuesAndTies) {
  constexpr auto kNs = Fp8Overflow::kNonSaturating;
  EXPECT_EQ(F32ToE4M3(1.0f, kNs), 0x38);  // 0.0111.000
  EXPECT_EQ(F32ToE4M3(2.0f, kNs), 0x40);  // 0.1000.000
  EXPECT_EQ(F32ToE4M3(-1.0f, kNs), 0xB8);
  EXPECT_EQ(F32ToE4M3(3.25f, kNs), 0x45);  // 1.625 * 2: 0.1000.101
  // 0.1 = 1.6 * 2^-4; mantissa 4.8/8 rounds to 5: 0.0011.101 = 0.1015625.
  EXPECT_EQ(F32ToE4M3(0.1f, kNs), 0x1D);
  EXPECT_EQ(F32ToE4M3(448.0f, kNs), 0x7E);
  EXPECT_EQ(F32ToE4M3(-448.0f, kNs), 0xFE);
  // 1.0625 is halfway between 1.0 (0x38, even) and 1.125 (0x39).
  EXPECT_EQ(F32ToE4M3(1.0625f, kNs), 0x38);
  // 1.1875 is halfway between 1.125 (0x39) and 1.25 (0x3A, even).
  EXPECT_EQ(F32ToE4M3(1.1875f, kNs), 0x3A);
  EXPECT_EQ(F32ToE4M3(std::nextafter(1.0625f, 2.0f), kNs), 0x39);
}

TEST(E4M3Test, Subnormals) {
  constexpr auto kNs = Fp8Overflow::kNonSaturating;
  EXPECT_EQ(F32ToE4M3(std::ldexp(1.0f, -9), kNs), 0x01);   // smallest
  EXPECT_EQ(F32ToE4M3(std::ldexp(1.0f, -10), kNs), 0x00);  // tie -> 0
  EXPECT_EQ(F32ToE4M3(std::ldexp(3.0f, -11), kNs), 0x01);  // 0.75 units
  EXPECT_EQ(F32ToE4M3(std::ldexp(3.0f, -10), kNs), 0x02);  // tie 1.5 -> 2
  EXPECT_EQ(F32ToE4M3(std::ldexp(5.0f, -10), kNs), 0x02);  // tie 2.5 -> 2
  EXPECT_EQ(F32ToE4M3(std::ldexp(7.0f, -9), kNs), 0x07);   // largest
  // 7.5 units: tie between 0x07 (odd) and the smallest normal 2^-6 (0x08).
  EXPECT_EQ(F32ToE4M3(std::ldexp(15.0f, -10), kNs), 0x08);
  EXPECT_EQ(F32ToE4M3(std::ldexp(1.0f, -6), kNs), 0x08);
  EXPECT_EQ(F32ToE4M3(-std::ldexp(1.0f, -9), kNs), 0x81);
  EXPECT_EQ(F32ToE4M3(-0.0f, kNs), 0x80);
  EXPECT_EQ(F32ToE4M3(F(0x00000001), kNs), 0x00);
}

TEST(E4M3Test, OverflowSaturatesOrGivesNaN) {
  constexpr auto kNs = Fp8Overflow::kNonSaturating;
  constexpr auto kSat = Fp8Overflow::kSaturate;
  const float inf = std::numeric_limits<float>::infinity();
  // 460 is below the midpoint 464 between 448 and 480: 448 in both modes.
  EXPECT_EQ(F32ToE4M3(460.0f, kNs), 0x7E);
  EXPECT_EQ(F32ToE4M3(460.0f, kSat), 0x7E);
  // 464 is a tie: 448 (mantissa 110) is even.
  EXPECT_EQ(F32ToE4M3(464.0f, kNs), 0x7E);
  EXPECT_EQ(F32ToE4M3(465.0f, kNs), 0x7F);
  EXPECT_EQ(F32ToE4M3(465.0f, kSat), 0x7E);
  EXPECT_EQ(F32ToE4M3(480.0f, kNs), 0x7F);
  EXPECT_EQ(F32ToE4M3(480.0f, kSat), 0x7E);
  EXPECT_EQ(F32ToE4M3(-1e6f, kNs), 0xFF);
  EXPECT_EQ(F32ToE4M3(-1e6f, kSat), 0xFE);
  EXPECT_EQ(F32ToE4M3(inf, kNs), 0x7F);
  EXPECT_EQ(F32ToE4M3(inf, kSat), 0x7E);
  EXPECT_EQ(F32ToE4M3(-inf, kSat), 0xFE);
  // NaN stays NaN, with its sign, in both modes.
  EXPECT_EQ(F32ToE4M3(F(0x7FC00000), kNs), 0x7F);
  EXPECT_EQ(F32ToE4M3(F(0x7FC00000), kSat), 0x7F);
  EXPECT_EQ(F32ToE4M3(F(0xFFC00000), kSat), 0xFF);
}

TEST(E4M3Test, Decoding) {
  EXPECT_EQ(E4M3ToF32(0x38), 1.0f);
  EXPECT_EQ(E4M3ToF32(0x7E), 448.0f);
  EXPECT_EQ(E4M3ToF32(0xFE), -448.0f);
  EXPECT_EQ(E4M3ToF32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(E4M3ToF32(0x07), std::ldexp(7.0f, -9));
  EXPECT_EQ(E4M3ToF32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(E4M3ToF32(0x1D), 0.1015625f);
  EXPECT_EQ(F32Bits(E4M3ToF32(0x80)), 0x80000000u);
  EXPECT_EQ(F32Bits(E4M3ToF32(0x7F)), 0x7FF00000u);
  EXPECT_EQ(F32Bits(E4M3ToF32(0xFF)), 0xFFF00000u);
}

TEST(E4M3Test, FromBf16AndF16RoundOnce) {
  constexpr auto kNs = Fp8Overflow::kNonSaturating;
  // BF16 0x3F88 = 1.0625, a tie -> 1.0; BF16 0x3F98 = 1.1875 -> 1.25.
  EXPECT_EQ(Bf16ToE4M3(0x3F88, kNs), 0x38);
  EXPECT_EQ(Bf16ToE4M3(0x3F98, kNs), 0x3A);
  // F16 0x3C40 = 1.0625; F16 0x5F40 = 464 (tie -> 448); 0x5F80 = 480.
  EXPECT_EQ(F16ToE4M3(0x3C40, kNs), 0x38);
  EXPECT_EQ(F16ToE4M3(0x5F40, kNs), 0x7E);
  EXPECT_EQ(F16ToE4M3(0x5F80, kNs), 0x7F);
  EXPECT_EQ(F16ToE4M3(0x5F80, Fp8Overflow::kSaturate), 0x7E);
  EXPECT_EQ(F16ToE4M3(0x0001, kNs), 0x00);  // 2^-24
  EXPECT_EQ(F16ToE4M3(0x1800, kNs), 0x01);  // 2^-9
}

TEST(E5M2Test, HandVectors) {
  constexpr auto kNs = Fp8Overflow::kNonSaturating;
  constexpr auto kSat = Fp8Overflow::kSaturate;
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(F32ToE5M2(1.0f, kNs), 0x3C);
  EXPECT_EQ(F32ToE5M2(-0.75f, kNs), 0xBA);
  // 1.125: tie between 1.0 (0x3C, even) and 1.25; 1.375: tie -> 1.5 (0x3E).
  EXPECT_EQ(F32ToE5M2(1.125f, kNs), 0x3C);
  EXPECT_EQ(F32ToE5M2(1.375f, kNs), 0x3E);
  EXPECT_EQ(F32ToE5M2(57344.0f, kNs), 0x7B);
  // 61440 is halfway between 57344 (0x7B, odd) and 65536 (inf, 0x7C).
  EXPECT_EQ(F32ToE5M2(61439.0f, kNs), 0x7B);
  EXPECT_EQ(F32ToE5M2(61440.0f, kNs), 0x7C);
  EXPECT_EQ(F32ToE5M2(61440.0f, kSat), 0x7B);
  EXPECT_EQ(F32ToE5M2(inf, kNs), 0x7C);
  EXPECT_EQ(F32ToE5M2(-inf, kNs), 0xFC);
  EXPECT_EQ(F32ToE5M2(-inf, kSat), 0xFB);
  EXPECT_EQ(F32ToE5M2(std::ldexp(1.0f, -16), kNs), 0x01);  // smallest
  EXPECT_EQ(F32ToE5M2(std::ldexp(1.0f, -17), kNs), 0x00);  // tie -> 0
  EXPECT_EQ(F32ToE5M2(std::ldexp(3.0f, -17), kNs), 0x02);  // tie -> 2
  EXPECT_EQ(F32ToE5M2(F(0x7FC00000), kNs), 0x7F);
  EXPECT_EQ(F32ToE5M2(F(0xFFC00000), kSat), 0xFF);
  EXPECT_EQ(E5M2ToF32(0x7B), 57344.0f);
  EXPECT_EQ(E5M2ToF32(0x01), std::ldexp(1.0f, -16));
  EXPECT_EQ(E5M2ToF32(0xFC), -inf);
  EXPECT_EQ(F32Bits(E5M2ToF32(0x7F)), 0x7FE00000u);
  EXPECT_EQ(Bf16ToE5M2(0x3F90, kNs), 0x3C);  // 1.125
  EXPECT_EQ(F16ToE5M2(0x3D80, kNs), 0x3E);   // 1.375
}

// ---------------------------------------------------------------------------
// Exhaustive checks against an independent oracle: the list of every finite
// value of a format, computed with std::ldexp from the bit-field definition,
// and round-to-nearest-even by search.

struct Format {
  int exp_bits;
  int man_bits;
  int bias;
  bool ieee;  // exponent all-ones is inf/NaN; otherwise only S.1111.111 (FN)
};
constexpr Format kBf16Format{8, 7, 127, true};
constexpr Format kF16Format{5, 10, 15, true};
constexpr Format kE4M3Format{4, 3, 7, false};
constexpr Format kE5M2Format{5, 2, 15, true};

double CodeValue(const Format& f, uint32_t code) {  // non-negative code
  const uint32_t e = code >> f.man_bits;
  const uint32_t m = code & ((1u << f.man_bits) - 1);
  if (e == 0)
    return std::ldexp(static_cast<double>(m), 1 - f.bias - f.man_bits);
  return std::ldexp(static_cast<double>((1u << f.man_bits) + m),
                    static_cast<int>(e) - f.bias - f.man_bits);
}

struct Oracle {
  Format format;
  std::vector<double> values;  // indexed by code; last = overflow sentinel
  uint32_t max_code = 0;       // largest finite magnitude code

  explicit Oracle(Format f) : format(f) {
    const uint32_t n = 1u << (f.exp_bits + f.man_bits);
    max_code = f.ieee ? ((n - 1) >> f.man_bits << f.man_bits) - 1 : n - 2;
    for (uint32_t c = 0; c <= max_code; ++c) values.push_back(CodeValue(f, c));
    // The value one ulp past the largest finite one: rounding to it overflows.
    values.push_back(values[max_code] +
                     (values[max_code] - values[max_code - 1]));
  }

  // Magnitude code of |x| rounded to nearest even; max_code + 1 = overflow.
  uint32_t Round(double x) const {
    x = std::fabs(x);
    if (x >= values.back()) return max_code + 1;
    const auto it = std::upper_bound(values.begin(), values.end(), x);
    const uint32_t hi = static_cast<uint32_t>(it - values.begin());
    const uint32_t lo = hi - 1;
    if (values[lo] == x) return lo;
    const double mid = (values[lo] + values[hi]) / 2;  // exact in double
    if (x < mid) return lo;
    if (x > mid) return hi;
    return (lo & 1u) == 0 ? lo : hi;
  }

  // Inputs that probe every rounding decision: each value, each midpoint
  // between neighbours, and the F32 neighbours of both, with both signs.
  std::vector<float> Probes() const {
    std::vector<float> out;
    for (size_t i = 0; i + 1 < values.size(); ++i) {
      for (double d : {values[i], (values[i] + values[i + 1]) / 2}) {
        const float v = static_cast<float>(d);
        EXPECT_EQ(static_cast<double>(v), d) << "probe not exact in F32";
        const float inf = std::numeric_limits<float>::infinity();
        for (float p : {v, std::nextafter(v, 0.0f), std::nextafter(v, inf)}) {
          out.push_back(p);
          out.push_back(-p);
        }
      }
    }
    return out;
  }
};

std::vector<float> RandomF32(size_t count) {
  std::mt19937 rng(20240611);
  std::vector<float> out;
  out.reserve(count);
  while (out.size() < count) {
    const float f = F(static_cast<uint32_t>(rng()));
    if (!std::isnan(f)) out.push_back(f);
  }
  return out;
}

// Checks `convert(x)` against the oracle for every probe and random input.
// Overflow maps to `overflow_code` (magnitude); the sign bit is `sign_bit`.
template <typename Convert>
void CheckAgainstOracle(const Oracle& oracle, uint32_t sign_bit,
                        uint32_t overflow_code, Convert convert) {
  std::vector<float> inputs = oracle.Probes();
  const std::vector<float> random = RandomF32(200000);
  inputs.insert(inputs.end(), random.begin(), random.end());
  int failures = 0;
  for (float x : inputs) {
    uint32_t mag = oracle.Round(x);
    if (mag > oracle.max_code) mag = overflow_code;
    const uint32_t want = (std::signbit(x) ? sign_bit : 0u) | mag;
    const uint32_t got = convert(x);
    if (got != want && ++failures <= 10) {
      ADD_FAILURE() << std::hex << "input bits 0x" << F32Bits(x) << ": got 0x"
                    << got << ", want 0x" << want;
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(OracleTest, Bf16RoundingMatchesOracle) {
  CheckAgainstOracle(Oracle(kBf16Format), 0x8000, 0x7F80,
                     [](float x) { return F32ToBf16(x); });
}

TEST(OracleTest, F16RoundingMatchesOracle) {
  CheckAgainstOracle(Oracle(kF16Format), 0x8000, 0x7C00,
                     [](float x) { return F32ToF16(x); });
}

TEST(OracleTest, E4M3RoundingMatchesOracle) {
  const Oracle oracle(kE4M3Format);
  EXPECT_EQ(oracle.max_code, 0x7Eu);
  EXPECT_EQ(oracle.values[0x7E], 448.0);
  CheckAgainstOracle(oracle, 0x80, 0x7F, [](float x) {
    return F32ToE4M3(x, Fp8Overflow::kNonSaturating);
  });
  CheckAgainstOracle(oracle, 0x80, 0x7E, [](float x) {
    return F32ToE4M3(x, Fp8Overflow::kSaturate);
  });
}

TEST(OracleTest, E5M2RoundingMatchesOracle) {
  const Oracle oracle(kE5M2Format);
  EXPECT_EQ(oracle.values[oracle.max_code], 57344.0);
  CheckAgainstOracle(oracle, 0x80, 0x7C, [](float x) {
    return F32ToE5M2(x, Fp8Overflow::kNonSaturating);
  });
  CheckAgainstOracle(oracle, 0x80, 0x7B, [](float x) {
    return F32ToE5M2(x, Fp8Overflow::kSaturate);
  });
}

// Every code of a format decodes to its defined value and re-encodes to
// itself; NaN codes decode to NaN.
template <typename Decode, typename Encode>
void CheckAllCodes(const Format& f, Decode decode, Encode encode) {
  const uint32_t bits = 1u + f.exp_bits + f.man_bits;
  const uint32_t sign_bit = 1u << (bits - 1);
  const uint32_t exp_all = ((1u << f.exp_bits) - 1) << f.man_bits;
  const uint32_t man_all = (1u << f.man_bits) - 1;
  for (uint32_t code = 0; code < (1u << bits); ++code) {
    const uint32_t mag = code & ~sign_bit;
    const float v = decode(code);
    const bool nan = f.ieee ? (mag & exp_all) == exp_all && (mag & man_all)
                            : mag == (exp_all | man_all);
    const bool inf = f.ieee && mag == exp_all;
    if (nan) {
      EXPECT_TRUE(std::isnan(v)) << std::hex << code;
      continue;
    }
    const double want =
        (code & sign_bit ? -1.0 : 1.0) *
        (inf ? std::numeric_limits<double>::infinity() : CodeValue(f, mag));
    EXPECT_EQ(static_cast<double>(v), want) << std::hex << code;
    EXPECT_EQ(std::signbit(v), (code & sign_bit) != 0) << std::hex << code;
    EXPECT_EQ(encode(v), code) << std::hex << code;
  }
}

TEST(OracleTest, AllCodesDecodeExactlyAndRoundTrip) {
  constexpr auto kNs = Fp8Overflow::kNonSaturating;
  CheckAllCodes(
      kBf16Format, [](uint32_t c) { return Bf16ToF32(uint16_t(c)); },
      [](float v) { return uint32_t{F32ToBf16(v)}; });
  CheckAllCodes(
      kF16Format, [](uint32_t c) { return F16ToF32(uint16_t(c)); },
      [](float v) { return uint32_t{F32ToF16(v)}; });
  CheckAllCodes(
      kE4M3Format, [](uint32_t c) { return E4M3ToF32(uint8_t(c)); },
      [](float v) { return uint32_t{F32ToE4M3(v, kNs)}; });
  CheckAllCodes(
      kE5M2Format, [](uint32_t c) { return E5M2ToF32(uint8_t(c)); },
      [](float v) { return uint32_t{F32ToE5M2(v, kNs)}; });
}

// The widening casts from BF16 and F16 followed by one narrowing equal the
// direct narrowing of the same value (one rounding, no double rounding).
TEST(OracleTest, Bf16AndF16ToFp8RoundOnce) {
  const Oracle e4m3(kE4M3Format);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    for (float v : {Bf16ToF32(uint16_t(h)), F16ToF32(uint16_t(h))}) {
      if (std::isnan(v)) continue;
      uint32_t mag = e4m3.Round(v);
      if (mag > e4m3.max_code) mag = 0x7E;
      const uint32_t want = (std::signbit(v) ? 0x80u : 0u) | mag;
      ASSERT_EQ(F32ToE4M3(v, Fp8Overflow::kSaturate), want) << std::hex << h;
    }
    ASSERT_EQ(Bf16ToE4M3(uint16_t(h), Fp8Overflow::kSaturate),
              F32ToE4M3(Bf16ToF32(uint16_t(h)), Fp8Overflow::kSaturate));
    ASSERT_EQ(F16ToE5M2(uint16_t(h), Fp8Overflow::kNonSaturating),
              F32ToE5M2(F16ToF32(uint16_t(h)), Fp8Overflow::kNonSaturating));
  }
}

// E5M2 is the top byte of F16: an F16 whose low byte is zero converts to its
// top byte.
TEST(OracleTest, E5M2IsTheTopByteOfF16) {
  for (uint32_t b = 0; b < 256; ++b) {
    const uint16_t h = static_cast<uint16_t>(b << 8);
    if (std::isnan(F16ToF32(h))) continue;
    EXPECT_EQ(F16ToE5M2(h, Fp8Overflow::kNonSaturating), b) << b;
  }
}

// The branch-free forms used in the bulk loops equal the scalar conversions
// on every probe (all codes, midpoints and their neighbours) and on random
// F32 bit patterns. (They were also compared once over all 2^32 patterns.)
TEST(OracleTest, BranchlessFormsEqualScalarConversions) {
  std::vector<float> inputs = RandomF32(1000000);
  for (const Format& f : {kF16Format, kE4M3Format, kBf16Format}) {
    const std::vector<float> probes = Oracle(f).Probes();
    inputs.insert(inputs.end(), probes.begin(), probes.end());
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {inf, -inf, F(0x7FC00000), F(0xFFC00001), F(0x7F800001)}) {
    inputs.push_back(v);
  }
  for (float x : inputs) {
    ASSERT_EQ(internal::F32ToF16Branchless(x), F32ToF16(x))
        << std::hex << F32Bits(x);
    if (std::isfinite(x)) {
      ASSERT_EQ(internal::FiniteF32ToE4M3Sat(x),
                F32ToE4M3(x, Fp8Overflow::kSaturate))
          << std::hex << F32Bits(x);
    }
  }
}

// ---------------------------------------------------------------------------
// CastBuffer.

template <typename T>
std::vector<std::byte> Bytes(const std::vector<T>& v) {
  std::vector<std::byte> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

template <typename T>
std::vector<T> Typed(std::span<const std::byte> b) {
  std::vector<T> out(b.size() / sizeof(T));
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

TEST(CastBufferTest, F32ToBf16AndF16) {
  // 1 + 2^-8 and 1 + 3 * 2^-8 are BF16 ties (-> 0x3F80, 0x3F82) but exact in
  // F16; 65520 rounds to BF16 65536 (0x4780) and to F16 inf.
  const std::vector<float> in = {1.0f,  F(0x3F808000), F(0x3F818000),
                                 -0.0f, 65520.0f,      F(0x7FC00000)};
  const std::vector<std::byte> src = Bytes(in);
  std::vector<std::byte> out(in.size() * 2);
  ASSERT_TRUE(CastBuffer(src, DType::kF32, out, DType::kBF16).ok());
  EXPECT_EQ(
      Typed<uint16_t>(out),
      (std::vector<uint16_t>{0x3F80, 0x3F80, 0x3F82, 0x8000, 0x4780, 0x7FC0}));
  ASSERT_TRUE(CastBuffer(src, DType::kF32, out, DType::kF16).ok());
  EXPECT_EQ(
      Typed<uint16_t>(out),
      (std::vector<uint16_t>{0x3C00, 0x3C04, 0x3C0C, 0x8000, 0x7C00, 0x7E00}));
}

TEST(CastBufferTest, WideningAndBetweenHalfFormats) {
  // BF16 -> F16: 1 + 2^-7 exact; 65280 exact (0x7BF8); 65536 -> inf.
  const std::vector<uint16_t> bf16 = {0x3F81, 0x477F, 0x4780, 0x3380};
  std::vector<std::byte> out16(bf16.size() * 2);
  ASSERT_TRUE(CastBuffer(Bytes(bf16), DType::kBF16, out16, DType::kF16).ok());
  // 0x3380 = 2^-24 -> the smallest F16 subnormal.
  EXPECT_EQ(Typed<uint16_t>(out16),
            (std::vector<uint16_t>{0x3C08, 0x7BF8, 0x7C00, 0x0001}));
  // F16 -> BF16: 1 + 2^-10 -> 1; 1 + 2^-8 (tie) -> 1; 1 + 3 * 2^-8 (tie) ->
  // 1 + 2^-6 (0x3F82).
  const std::vector<uint16_t> f16 = {0x3C01, 0x3C04, 0x3C0C};
  out16.resize(f16.size() * 2);
  ASSERT_TRUE(CastBuffer(Bytes(f16), DType::kF16, out16, DType::kBF16).ok());
  EXPECT_EQ(Typed<uint16_t>(out16),
            (std::vector<uint16_t>{0x3F80, 0x3F80, 0x3F82}));
  std::vector<std::byte> out32(f16.size() * 4);
  ASSERT_TRUE(CastBuffer(Bytes(f16), DType::kF16, out32, DType::kF32).ok());
  EXPECT_EQ(
      Typed<float>(out32),
      (std::vector<float>{1.0f + 0x1p-10f, 1.0f + 0x1p-8f, 1.0f + 0x3p-8f}));
  ASSERT_TRUE(CastBuffer(Bytes(f16), DType::kBF16, out32, DType::kF32).ok());
  EXPECT_EQ(F32Bits(Typed<float>(out32)[0]), 0x3C010000u);
  // Same dtype: a copy.
  ASSERT_TRUE(CastBuffer(Bytes(f16), DType::kF16, out16, DType::kF16).ok());
  EXPECT_EQ(Typed<uint16_t>(out16), f16);
}

TEST(CastBufferTest, UnalignedSpans) {
  const std::vector<float> in = {1.5f, -2.25f, 3.0f};
  std::vector<std::byte> src(1 + in.size() * 4);
  std::memcpy(src.data() + 1, in.data(), in.size() * 4);
  std::vector<std::byte> dst(1 + in.size() * 2);
  ASSERT_TRUE(CastBuffer(std::span(src).subspan(1), DType::kF32,
                         std::span(dst).subspan(1), DType::kBF16)
                  .ok());
  EXPECT_EQ(Typed<uint16_t>(std::span(dst).subspan(1)),
            (std::vector<uint16_t>{0x3FC0, 0xC010, 0x4040}));
}

TEST(CastBufferTest, Errors) {
  std::vector<std::byte> in(8), out(8);
  Status s = CastBuffer(in, DType::kF8E4M3, out, DType::kF32);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("F8_E4M3 -> F32"), std::string::npos)
      << s.message();
  s = CastBuffer(in, DType::kF32, out, DType::kI32);
  EXPECT_NE(s.message().find("F32 -> I32"), std::string::npos) << s.message();
  // 8 F32 bytes are 2 elements: 4 BF16 bytes, not 8.
  s = CastBuffer(in, DType::kF32, out, DType::kBF16);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("F32 -> BF16"), std::string::npos) << s.message();
  // 7 bytes are not whole F32 elements.
  s = CastBuffer(std::span(in).first(7), DType::kF32, std::span(out).first(4),
                 DType::kBF16);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      CastBuffer({}, DType::kF32, std::span<std::byte>(), DType::kF16).ok());
}

}  // namespace
}  // namespace refit::quant
