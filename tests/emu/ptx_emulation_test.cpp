// The PTX layer of the tensor-core kernels (cuda/ptx.cuh), as the emulator runs it
// (tests/emu/fake/cuda/ptx.cuh, tests/emu/emu_ptx.cpp, the scheduler's cp.async and dynamic
// shared memory), checked instruction by instruction against expectations derived by hand from
// the PTX ISA's tables. Matrices hold index codes (an element's value names its row and column),
// so a wrong layout shows which element moved where. Planted bugs (a swapped fragment register, a
// missing wait or barrier, a swizzle that is not a bijection) must change the result: that is
// what the emulator is for.
//
// Test kernels are written here as plain functions (the fake headers make CUDA syntax valid C++)
// or as lambdas on emu::run_grid; tests/emu/ptx_test_kernels.cu holds the ones that go through
// tests/emu/cuda_to_cpp.py.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/ptx.cuh"
#include "tests/emu/emu_ptx.h"
#include "tests/emu/emu_runtime.h"
#include "tests/emu/ptx_test_kernels.h"

namespace convnet::emu_test {
namespace {

namespace ptx = convnet::cuda::ptx;

// The emu::Error message `f` throws, or "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const emu::Error& e) {
    return e.what();
  }
  return {};
}

#define EXPECT_ERROR_CONTAINS(message, part) \
  EXPECT_NE((message).find(part), std::string::npos) << "message: \"" << (message) << "\""

uint32_t bits_of(float x) {
  return std::bit_cast<uint32_t>(x);
}
float float_of(uint32_t bits) {
  return std::bit_cast<float>(bits);
}

// =============================================================================================
// Conversions

TEST(ConversionEmulation, Tf32RoundsToNearestTiesAwayFromZero) {
  struct Case {
    uint32_t in, out;
    const char* what;
  };
  const Case cases[] = {
      {0x3f800000u, 0x3f800000u, "1.0 is exact"},
      {0x3f802000u, 0x3f802000u, "1 + 2^-10 is exact"},
      {0x3f800fffu, 0x3f800000u, "below the tie: down"},
      {0x3f801000u, 0x3f802000u, "tie above an even mantissa: away (nearest-even would stay)"},
      {0x3f803000u, 0x3f804000u, "tie above an odd mantissa: away"},
      {0x3f805000u, 0x3f806000u, "tie, 0x..4000 is even: still away"},
      {0x3f801001u, 0x3f802000u, "above the tie: up"},
      {0xbf801000u, 0xbf802000u, "negative tie: away from zero, i.e. down"},
      {0x3fffffffu, 0x40000000u, "carry into the exponent"},
      {0x7f7fffffu, 0x7f800000u, "FLT_MAX rounds to infinity"},
      {0x00001000u, 0x00002000u, "subnormal tie: away"},
      {0x00000fffu, 0x00000000u, "tiny subnormal: to zero"},
      {0x80000000u, 0x80000000u, "-0 stays -0"},
      {0x7f800000u, 0x7f800000u, "+inf unchanged"},
      {0xff800000u, 0xff800000u, "-inf unchanged"},
      {0x7fc00000u, 0x7fc00000u, "quiet NaN unchanged"},
      {0x7f800001u, 0x7f800001u, "NaN with only low payload bits stays a NaN"},
  };
  for (const Case& c : cases) EXPECT_EQ(ptx::to_tf32(float_of(c.in)), c.out) << std::hex << c.in << ": " << c.what;
}

TEST(ConversionEmulation, Tf32OfRandomValuesKeepsTenMantissaBitsWithinHalfAnUlp) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1000.0f, 1000.0f);
  for (int i = 0; i < 2000; ++i) {
    const float x = dist(rng);
    const uint32_t r = ptx::to_tf32(x);
    ASSERT_EQ(r & 0x1fffu, 0u) << x;
    const double ulp = std::ldexp(1.0, std::ilogb(x) - 10);
    EXPECT_LE(std::abs(static_cast<double>(float_of(r)) - x), ulp / 2) << x;
  }
}

TEST(ConversionEmulation, Bf16RoundsToNearestTiesToEven) {
  struct Case {
    uint32_t in;
    uint16_t out;
    const char* what;
  };
  const Case cases[] = {
      {0x3f800000u, 0x3f80, "1.0 is exact"},
      {0x3f807fffu, 0x3f80, "below the tie: down"},
      {0x3f808000u, 0x3f80, "tie, 0x3f80 is even: down"},
      {0x3f818000u, 0x3f82, "tie, 0x3f81 is odd: up to even"},
      {0x3f808001u, 0x3f81, "above the tie: up"},
      {0xbf818000u, 0xbf82, "negative tie to even"},
      {0x7f7fffffu, 0x7f80, "FLT_MAX overflows to infinity"},
      {0x7f7f8000u, 0x7f80, "tie at the top, 0x7f7f is odd: up to infinity"},
      {0x7f800000u, 0x7f80, "+inf"},
      {0xff800000u, 0xff80, "-inf"},
      {0x80000000u, 0x8000, "-0"},
  };
  for (const Case& c : cases) EXPECT_EQ(ptx::to_bf16(float_of(c.in)), c.out) << std::hex << c.in << ": " << c.what;
  for (const uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffc00001u, 0x7fffffffu}) {
    const uint16_t r = ptx::to_bf16(float_of(nan));
    EXPECT_EQ(r & 0x7f80u, 0x7f80u) << std::hex << nan;  // exponent all ones
    EXPECT_NE(r & 0x0040u, 0u) << std::hex << nan;       // quiet (not turned into infinity)
    EXPECT_EQ(r & 0x8000u, (nan >> 16) & 0x8000u) << std::hex << nan;
  }
}

TEST(ConversionEmulation, FromBf16IsExactAndPackPutsLoInTheLowHalf) {
  EXPECT_EQ(ptx::from_bf16(0x3f80), 1.0f);
  EXPECT_EQ(ptx::from_bf16(0xc040), -3.0f);
  EXPECT_EQ(ptx::from_bf16(0x3f81), 1.0f + 1.0f / 128);
  EXPECT_EQ(ptx::pack_bf16x2(1.0f, -2.0f), 0xc0003f80u);
  EXPECT_EQ(ptx::pack_bf16x2(-3.0f, 1.0f + 1.0f / 128), 0x3f81c040u);
  for (uint32_t b = 0; b < 0x10000u; b += 0x101u) {  // round trip of every exponent
    const float f = ptx::from_bf16(static_cast<uint16_t>(b));
    if (!std::isnan(f)) {
      EXPECT_EQ(static_cast<uint32_t>(ptx::to_bf16(f)), b) << std::hex << b;
    }
  }
}

TEST(ConversionEmulation, SharedAddressIsTheLowBitsOfThePointer) {
  alignas(16) static unsigned char buffer[64];
  EXPECT_EQ(ptx::shared_address(buffer + 48) - ptx::shared_address(buffer), 48u);
  EXPECT_EQ(ptx::shared_address(buffer), static_cast<uint32_t>(reinterpret_cast<uintptr_t>(buffer)));
  EXPECT_EQ(CONVNET_PTX_SM80, 1);
}

// =============================================================================================
// The warp-collective primitive

TEST(WarpCollectiveEmulation, GatherGivesEveryLaneEveryLanesBlock) {
  struct Block {
    uint32_t lane, square, block;
  };
  std::vector<Block> seen(64 * 32);
  emu::run_grid(dim3(1), dim3(64), [&] {
    const unsigned t = threadIdx.x;
    const Block mine{t % 32, (t % 32) * (t % 32), t / 32};
    Block all[32];
    emu::warp_gather(0xffffffffu, &mine, sizeof mine, all);
    std::copy(all, all + 32, seen.begin() + t * 32);
  });
  for (unsigned t = 0; t < 64; ++t)
    for (unsigned l = 0; l < 32; ++l) {
      const Block& b = seen[t * 32 + l];
      EXPECT_EQ(b.lane, l);
      EXPECT_EQ(b.square, l * l);
      EXPECT_EQ(b.block, t / 32) << "a lane saw another warp's block";
    }
}

TEST(WarpCollectiveEmulation, PartialWarpsAndDivergentLanesAreErrors) {
  const std::string partial = error_of([] {
    emu::run_grid(dim3(1), dim3(48), [] {
      const int mine = 1;
      int all[32];
      emu::warp_gather(0xffffffffu, &mine, sizeof mine, all);
    });
  });
  EXPECT_ERROR_CONTAINS(partial, "full warps");
  const std::string divergent = error_of([] {
    emu::run_grid(dim3(1), dim3(32), [] {
      if (threadIdx.x == 7) {
        __syncwarp();
        return;
      }
      const int mine = 1;
      int all[32];
      emu::warp_gather(0xffffffffu, &mine, sizeof mine, all);
    });
  });
  EXPECT_ERROR_CONTAINS(divergent, "lane 7");
}

// =============================================================================================
// ldmatrix

// Element (row r, column c) of 8x8 b16 matrix i: 0x0irc.
uint16_t element(unsigned i, unsigned r, unsigned c) {
  return static_cast<uint16_t>((i << 8) | (r << 4) | c);
}
// Where row j (= 8 * matrix + row) of the four matrices is stored: scattered, so that only the
// lanes' addresses say where a row is.
unsigned slot_of_row(unsigned j) {
  return (j * 7 + 3) % 32;
}

// The words the ISA's table gives lane l from matrix i: (row g, word t), or with .trans the
// elements (row 2t, column g) low and (row 2t + 1, column g) high.
uint32_t documented_word(unsigned i, unsigned lane, bool trans) {
  const unsigned g = lane / 4, t = lane % 4;
  if (!trans) return element(i, g, 2 * t) | static_cast<uint32_t>(element(i, g, 2 * t + 1)) << 16;
  return element(i, 2 * t, g) | static_cast<uint32_t>(element(i, 2 * t + 1, g)) << 16;
}

template <int N, bool kTrans>
void ldmatrix(uint32_t (&r)[N], const void* row) {
  if constexpr (N == 1) kTrans ? ptx::ldmatrix_x1_trans(r, row) : ptx::ldmatrix_x1(r, row);
  if constexpr (N == 2) kTrans ? ptx::ldmatrix_x2_trans(r, row) : ptx::ldmatrix_x2(r, row);
  if constexpr (N == 4) kTrans ? ptx::ldmatrix_x4_trans(r, row) : ptx::ldmatrix_x4(r, row);
}

// Every lane's registers after one ldmatrix of the scattered matrices (out[lane * 4 + i]; the
// registers past N keep their sentinel). Lanes whose address is unused give nullptr.
template <int N, bool kTrans>
std::vector<uint32_t> load_scattered_matrices() {
  alignas(16) uint16_t rows[32][8];
  for (unsigned j = 0; j < 32; ++j)
    for (unsigned c = 0; c < 8; ++c) rows[slot_of_row(j)][c] = element(j / 8, j % 8, c);
  std::vector<uint32_t> out(32 * 4, 0xdeadbeefu);
  emu::run_grid(dim3(1), dim3(32), [&] {
    const unsigned lane = threadIdx.x;
    uint32_t r[N];
    ldmatrix<N, kTrans>(r, lane < 8 * N ? rows[slot_of_row(lane)] : nullptr);
    std::copy(r, r + N, out.begin() + lane * 4);
  });
  return out;
}

template <int N, bool kTrans>
void expect_documented_words() {
  emu::reset_stats();
  const std::vector<uint32_t> out = load_scattered_matrices<N, kTrans>();
  EXPECT_EQ(emu::stats().ldmatrix, 1);
  for (unsigned lane = 0; lane < 32; ++lane)
    for (unsigned i = 0; i < 4; ++i)
      EXPECT_EQ(out[lane * 4 + i], i < N ? documented_word(i, lane, kTrans) : 0xdeadbeefu)
          << "x" << N << (kTrans ? ".trans" : "") << ", lane " << lane << ", register " << i << std::hex << ": got 0x"
          << out[lane * 4 + i];
}

TEST(LdmatrixEmulation, X1GivesTheDocumentedWords) {
  expect_documented_words<1, false>();
  // Spelled out for lane 5 (g 1, t 1): (row 1, columns 2 and 3).
  EXPECT_EQ((load_scattered_matrices<1, false>()[5 * 4]), 0x00130012u);
}
TEST(LdmatrixEmulation, X2GivesTheDocumentedWords) {
  expect_documented_words<2, false>();
}
TEST(LdmatrixEmulation, X4GivesTheDocumentedWords) {
  expect_documented_words<4, false>();
  // Lane 30 (g 7, t 2), register 3: matrix 3, row 7, columns 4 and 5.
  EXPECT_EQ((load_scattered_matrices<4, false>()[30 * 4 + 3]), 0x03750374u);
}
TEST(LdmatrixEmulation, X1TransGivesTheDocumentedWords) {
  expect_documented_words<1, true>();
  // Lane 5 (g 1, t 1): rows 2 and 3 of column 1.
  EXPECT_EQ((load_scattered_matrices<1, true>()[5 * 4]), 0x00310021u);
}
TEST(LdmatrixEmulation, X2TransGivesTheDocumentedWords) {
  expect_documented_words<2, true>();
}
TEST(LdmatrixEmulation, X4TransGivesTheDocumentedWords) {
  expect_documented_words<4, true>();
  // Lane 30 (g 7, t 2), register 2: matrix 2, rows 4 and 5 of column 7.
  EXPECT_EQ((load_scattered_matrices<4, true>()[30 * 4 + 2]), 0x02570247u);
}

TEST(LdmatrixEmulation, MisalignedRowAddressIsAnErrorNamingTheLane) {
  alignas(16) static uint16_t rows[32][8] = {};
  const std::string message = error_of([] {
    emu::run_grid(dim3(1), dim3(32), [] {
      uint32_t r[4];
      const unsigned lane = threadIdx.x;
      ptx::ldmatrix_x4(r, reinterpret_cast<const unsigned char*>(rows[lane]) + (lane == 3 ? 8 : 0));
    });
  });
  EXPECT_ERROR_CONTAINS(message, "lane 3");
  EXPECT_ERROR_CONTAINS(message, "not 16-byte aligned");
  // .x1 uses lanes 0..7 only: lane 9's misaligned address is ignored.
  EXPECT_EQ(error_of([] {
              emu::run_grid(dim3(1), dim3(32), [] {
                uint32_t r[1];
                const unsigned lane = threadIdx.x;
                ptx::ldmatrix_x1(r, reinterpret_cast<const unsigned char*>(rows[lane]) + (lane == 9 ? 8 : 0));
              });
            }),
            "");
}

TEST(LdmatrixEmulation, NeedsFullWarps) {
  alignas(16) static uint16_t rows[8][8] = {};
  const std::string message = error_of([] {
    emu::run_grid(dim3(1), dim3(40), [] {
      uint32_t r[1];
      ptx::ldmatrix_x1(r, rows[threadIdx.x % 8]);
    });
  });
  EXPECT_ERROR_CONTAINS(message, "full warps");
}

// The bank conflicts of one ldmatrix.x4 in which lane l gives the address `offset(row l % 8,
// chunk l / 8)` (bytes) of a 128-byte aligned tile: matrix i is 16-byte chunk i of rows 0..7.
template <class Offset>
int64_t x4_bank_conflicts(Offset offset) {
  emu::reset_stats();
  emu::run_grid(dim3(1), dim3(32), 8 * 256, [&] {
    const auto* tile = static_cast<const unsigned char*>(emu::dynamic_shared_memory());
    uint32_t r[4];
    ptx::ldmatrix_x4(r, tile + offset(threadIdx.x % 8, threadIdx.x / 8));
  });
  EXPECT_EQ(emu::stats().ldmatrix, 1);
  return emu::stats().shared_bank_conflicts;
}

TEST(LdmatrixEmulation, CountsBankConflicts) {
  // 128-byte rows: the 8 rows of a matrix fall on the same 4 banks, 8 wavefronts instead of 1.
  EXPECT_EQ(x4_bank_conflicts([](unsigned row, unsigned chunk) { return row * 128 + chunk * 16; }), 4 * 7);
  // 64-byte rows: rows 0, 2, 4, 6 share banks (and 1, 3, 5, 7).
  EXPECT_EQ(x4_bank_conflicts([](unsigned row, unsigned chunk) { return row * 64 + chunk * 16; }), 4 * 3);
  // Padded to 144 bytes (one 16-byte chunk more): each row shifts by 4 banks.
  EXPECT_EQ(x4_bank_conflicts([](unsigned row, unsigned chunk) { return row * 144 + chunk * 16; }), 0);
  // 128-byte rows with the chunk XOR-swizzled by the row: a permutation of the 8 bank groups.
  EXPECT_EQ(x4_bank_conflicts([](unsigned row, unsigned chunk) { return row * 128 + (chunk ^ row) * 16; }), 0);
  // Every lane the same address: one broadcast.
  EXPECT_EQ(x4_bank_conflicts([](unsigned, unsigned) { return 0u; }), 0);
}

TEST(LdmatrixEmulation, PhaseConflictsOfSingleRows) {
  alignas(128) static unsigned char tile[2048];
  auto rows_at = [](std::initializer_list<unsigned> offsets) {
    std::array<const void*, 8> rows{};
    std::transform(offsets.begin(), offsets.end(), rows.begin(), [](unsigned o) { return tile + o; });
    return emu::ldmatrix_phase_conflicts(rows);
  };
  EXPECT_EQ(rows_at({0, 16, 32, 48, 64, 80, 96, 112}), 0);
  EXPECT_EQ(rows_at({0, 128, 32, 48, 64, 80, 96, 112}), 1);  // two rows on banks 0-3
  EXPECT_EQ(rows_at({0, 0, 32, 48, 64, 80, 96, 112}), 0);    // the same row twice: a broadcast
  EXPECT_EQ(rows_at({0, 128, 256, 384, 512, 640, 768, 896}), 7);
}

// =============================================================================================
// mma.sync

// TF32 m16n8k8, one warp: each lane loads its fragments from the whole matrices exactly as the
// ISA's table lists them, and stores its d the same way. swap_a12 is a planted bug (registers a1
// and a2 exchanged); in_place accumulates into c's registers, as kernels do.
struct Tf32Mma {
  float a[16][8] = {}, b[8][8] = {}, c[16][8] = {}, d[16][8] = {};
  void run(bool swap_a12 = false, bool in_place = false) {
    emu::run_grid(dim3(1), dim3(32), [&] {
      const unsigned g = threadIdx.x / 4, t = threadIdx.x % 4;
      uint32_t af[4] = {bits_of(a[g][t]), bits_of(a[g + 8][t]), bits_of(a[g][t + 4]), bits_of(a[g + 8][t + 4])};
      if (swap_a12) std::swap(af[1], af[2]);
      const uint32_t bf[2] = {bits_of(b[t][g]), bits_of(b[t + 4][g])};
      float cf[4] = {c[g][2 * t], c[g][2 * t + 1], c[g + 8][2 * t], c[g + 8][2 * t + 1]};
      float df[4];
      if (in_place) {
        ptx::mma_m16n8k8_tf32(cf, af, bf, cf);
        std::copy(cf, cf + 4, df);
      } else {
        ptx::mma_m16n8k8_tf32(df, af, bf, cf);
      }
      d[g][2 * t] = df[0];
      d[g][2 * t + 1] = df[1];
      d[g + 8][2 * t] = df[2];
      d[g + 8][2 * t + 1] = df[3];
    });
  }
};

// BF16 m16n8k16, the same way; pack_bf16x2 puts the lower k in the low half.
struct Bf16Mma {
  float a[16][16] = {}, b[16][8] = {}, c[16][8] = {}, d[16][8] = {};
  void run(bool swap_a12 = false) {
    emu::run_grid(dim3(1), dim3(32), [&] {
      const unsigned g = threadIdx.x / 4, t = threadIdx.x % 4;
      uint32_t af[4] = {ptx::pack_bf16x2(a[g][2 * t], a[g][2 * t + 1]),
                        ptx::pack_bf16x2(a[g + 8][2 * t], a[g + 8][2 * t + 1]),
                        ptx::pack_bf16x2(a[g][2 * t + 8], a[g][2 * t + 9]),
                        ptx::pack_bf16x2(a[g + 8][2 * t + 8], a[g + 8][2 * t + 9])};
      if (swap_a12) std::swap(af[1], af[2]);
      const uint32_t bf[2] = {ptx::pack_bf16x2(b[2 * t][g], b[2 * t + 1][g]),
                              ptx::pack_bf16x2(b[2 * t + 8][g], b[2 * t + 9][g])};
      const float cf[4] = {c[g][2 * t], c[g][2 * t + 1], c[g + 8][2 * t], c[g + 8][2 * t + 1]};
      float df[4];
      ptx::mma_m16n8k16_bf16(df, af, bf, cf);
      d[g][2 * t] = df[0];
      d[g][2 * t + 1] = df[1];
      d[g + 8][2 * t] = df[2];
      d[g + 8][2 * t + 1] = df[3];
    });
  }
};

// The double reference d = a b + c, and its largest difference from the emulated d.
template <int K>
double max_error(const float (&a)[16][K], const float (&b)[K][8], const float (&c)[16][8], const float (&d)[16][8]) {
  double worst = 0;
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      double ref = c[m][n];
      for (int k = 0; k < K; ++k) ref += static_cast<double>(a[m][k]) * b[k][n];
      worst = std::max(worst, std::isnan(d[m][n]) ? INFINITY : std::abs(d[m][n] - ref));
    }
  return worst;
}

template <int R, int C>
void fill_random(float (&m)[R][C], std::mt19937& rng, float (*rounding)(float)) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& row : m)
    for (float& x : row) x = rounding(dist(rng));
}
float round_tf32(float x) {
  return float_of(ptx::to_tf32(x));
}
float round_bf16(float x) {
  return ptx::from_bf16(ptx::to_bf16(x));
}
float keep(float x) {
  return x;
}

TEST(MmaTf32Emulation, IndexTimesIdentityIsTheIndex) {
  Tf32Mma mma;
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 8; ++k) mma.a[m][k] = static_cast<float>(m * 100 + k);
  for (int k = 0; k < 8; ++k) mma.b[k][k] = 1;
  emu::reset_stats();
  mma.run();
  EXPECT_EQ(emu::stats().mma, 1);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      EXPECT_EQ(mma.d[m][n], static_cast<float>(m * 100 + n)) << "d(" << m << ", " << n << ")";
}

TEST(MmaTf32Emulation, IdentityTimesIndexIsTheIndex) {
  // A's rows 8..15 select B's rows again, doubled, so the two halves of the C layout differ.
  Tf32Mma mma;
  for (int m = 0; m < 16; ++m) mma.a[m][m % 8] = m < 8 ? 1.0f : 2.0f;
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 8; ++n) mma.b[k][n] = static_cast<float>(k * 100 + n);
  mma.run();
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      EXPECT_EQ(mma.d[m][n], static_cast<float>((m < 8 ? 1 : 2) * (m % 8 * 100 + n))) << "d(" << m << ", " << n << ")";
}

TEST(MmaTf32Emulation, AccumulatorPassesThroughItsLayout) {
  Tf32Mma mma;  // a = 0
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) mma.c[m][n] = static_cast<float>(m * 100 + n);
  mma.run();
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      EXPECT_EQ(mma.d[m][n], static_cast<float>(m * 100 + n)) << "d(" << m << ", " << n << ")";
}

TEST(MmaTf32Emulation, RandomMatchesTheDoubleReference) {
  std::mt19937 rng(11);
  for (const bool in_place : {false, true}) {
    Tf32Mma mma;
    fill_random(mma.a, rng, round_tf32);
    fill_random(mma.b, rng, round_tf32);
    fill_random(mma.c, rng, keep);
    mma.run(false, in_place);
    EXPECT_LT(max_error(mma.a, mma.b, mma.c, mma.d), 1e-6) << (in_place ? "d aliasing c" : "");
  }
}

TEST(MmaTf32Emulation, IgnoresTheLowThirteenMantissaBits) {
  Tf32Mma mma;
  for (int k = 0; k < 8; ++k) mma.b[k][k] = 1;
  mma.a[0][0] = float_of(0x3fffffffu);  // 2 - 2^-23: TF32 keeps 2 - 2^-10 (truncation, not rounding)
  mma.a[9][3] = float_of(0x3f800fffu);  // 1 + 4095 * 2^-23: TF32 keeps 1
  mma.run();
  EXPECT_EQ(mma.d[0][0], float_of(0x3fffe000u));
  EXPECT_EQ(mma.d[9][3], 1.0f);
  // The same on B's side.
  Tf32Mma mb;
  for (int m = 0; m < 16; ++m) mb.a[m][m % 8] = 1;
  mb.b[5][2] = float_of(0xc0401fffu);  // -(3 + 8191 * 2^-22): TF32 keeps -3
  mb.run();
  EXPECT_EQ(mb.d[5][2], -3.0f);
  EXPECT_EQ(mb.d[13][2], -3.0f);
}

TEST(MmaTf32Emulation, SwappedFragmentRegistersAreCaught) {
  std::mt19937 rng(12);
  Tf32Mma mma;
  fill_random(mma.a, rng, round_tf32);
  fill_random(mma.b, rng, round_tf32);
  mma.run(true);  // the planted bug: a1 and a2 exchanged
  EXPECT_GT(max_error(mma.a, mma.b, mma.c, mma.d), 1e-3);
}

TEST(MmaTf32Emulation, NeedsFullWarps) {
  const std::string message = error_of([] {
    emu::run_grid(dim3(1), dim3(16), [] {
      const uint32_t a[4] = {}, b[2] = {};
      const float c[4] = {};
      float d[4];
      ptx::mma_m16n8k8_tf32(d, a, b, c);
    });
  });
  EXPECT_ERROR_CONTAINS(message, "full warps");
}

TEST(MmaBf16Emulation, IndexTimesIdentityIsTheIndex) {
  // A (16x16) holds m * 16 + k, exact in bf16 (below 256). B selects A's columns 0..7, then
  // 8..15, so both halves of every A register are checked.
  for (const int k_offset : {0, 8}) {
    Bf16Mma mma;
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 16; ++k) mma.a[m][k] = static_cast<float>(m * 16 + k);
    for (int n = 0; n < 8; ++n) mma.b[n + k_offset][n] = 1;
    emu::reset_stats();
    mma.run();
    EXPECT_EQ(emu::stats().mma, 1);
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n)
        EXPECT_EQ(mma.d[m][n], static_cast<float>(m * 16 + n + k_offset))
            << "columns from " << k_offset << ", d(" << m << ", " << n << ")";
  }
}

TEST(MmaBf16Emulation, IdentityTimesIndexIsTheIndex) {
  Bf16Mma mma;
  for (int m = 0; m < 16; ++m) mma.a[m][m] = 1;
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 8; ++n) mma.b[k][n] = static_cast<float>(k * 16 + n);
  mma.run();
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) EXPECT_EQ(mma.d[m][n], static_cast<float>(m * 16 + n)) << "d(" << m << ", " << n << ")";
}

TEST(MmaBf16Emulation, RandomMatchesTheDoubleReference) {
  std::mt19937 rng(21);
  Bf16Mma mma;
  fill_random(mma.a, rng, round_bf16);
  fill_random(mma.b, rng, round_bf16);
  fill_random(mma.c, rng, keep);
  mma.run();
  EXPECT_LT(max_error(mma.a, mma.b, mma.c, mma.d), 1e-6);
}

TEST(MmaBf16Emulation, SwappedFragmentRegistersAreCaught) {
  std::mt19937 rng(22);
  Bf16Mma mma;
  fill_random(mma.a, rng, round_bf16);
  fill_random(mma.b, rng, round_bf16);
  mma.run(true);
  EXPECT_GT(max_error(mma.a, mma.b, mma.c, mma.d), 1e-3);
}

// =============================================================================================
// cp.async

alignas(16) const float kSource[8] = {1, 2, 3, 4, 5, 6, 7, 8};

TEST(CpAsyncEmulation, DataLandsOnlyAtTheWait) {
  float before_commit[8], after_commit[8], after_wait[8];
  emu::reset_stats();
  emu::run_grid(dim3(1), dim3(1), 32, [&] {
    auto* s = static_cast<float*>(emu::dynamic_shared_memory());
    std::fill(s, s + 8, -1.0f);
    ptx::cp_async_16(s, kSource, true);
    ptx::cp_async_16(s + 4, kSource + 4, true);
    std::copy(s, s + 8, before_commit);
    ptx::cp_async_commit();
    std::copy(s, s + 8, after_commit);
    ptx::cp_async_wait<0>();
    std::copy(s, s + 8, after_wait);
  });
  EXPECT_EQ(emu::stats().cp_async, 2);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(before_commit[i], -1.0f) << i << ": stale until the wait";
    EXPECT_EQ(after_commit[i], -1.0f) << i << ": stale until the wait";
    EXPECT_EQ(after_wait[i], kSource[i]) << i;
  }
}

TEST(CpAsyncEmulation, AnotherThreadReadingBeforeTheIssuerWaitsSeesOldData) {
  float early[4], late[4];
  emu::run_grid(dim3(1), dim3(64), 16, [&] {
    auto* s = static_cast<float*>(emu::dynamic_shared_memory());
    if (threadIdx.x == 0) {
      std::fill(s, s + 4, -1.0f);
      ptx::cp_async_16(s, kSource, true);
      ptx::cp_async_commit();
    }
    __syncthreads();
    if (threadIdx.x == 40) std::copy(s, s + 4, early);  // the bug: thread 0 has not waited
    __syncthreads();
    if (threadIdx.x == 0) ptx::cp_async_wait<0>();
    __syncthreads();
    if (threadIdx.x == 40) std::copy(s, s + 4, late);
  });
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(early[i], -1.0f) << i;
    EXPECT_EQ(late[i], kSource[i]) << i;
  }
}

TEST(CpAsyncEmulation, ZeroFillWritesZerosWithoutReadingTheSource) {
  float after[4];
  bool poisoned = false;
  emu::run_grid(dim3(1), dim3(1), 16, [&] {
    auto* s = static_cast<float*>(emu::dynamic_shared_memory());
    poisoned = std::isnan(s[0]);
    // Address 16 is in the unmapped first page: reading it would crash the test.
    ptx::cp_async_16(s, reinterpret_cast<const void*>(uintptr_t{16}), false);
    ptx::cp_async_commit();
    ptx::cp_async_wait<0>();
    std::copy(s, s + 4, after);
  });
  EXPECT_TRUE(poisoned);
  for (float x : after) EXPECT_EQ(bits_of(x), 0u);
}

TEST(CpAsyncEmulation, WaitGroupLandsAllButTheNewestGroups) {
  float after_wait1[8], after_wait0[8], empty_group[4];
  emu::run_grid(dim3(1), dim3(1), 48, [&] {
    auto* s = static_cast<float*>(emu::dynamic_shared_memory());
    std::fill(s, s + 12, -1.0f);
    ptx::cp_async_16(s, kSource, true);  // group 1
    ptx::cp_async_commit();
    ptx::cp_async_16(s + 4, kSource + 4, true);  // group 2
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();  // group 2 may still be pending
    std::copy(s, s + 8, after_wait1);
    ptx::cp_async_wait<0>();
    std::copy(s, s + 8, after_wait0);
    // An empty group counts: with it the newest, wait<1> lands the group before it.
    ptx::cp_async_16(s + 8, kSource, true);
    ptx::cp_async_commit();
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();
    std::copy(s + 8, s + 12, empty_group);
  });
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(after_wait1[i], kSource[i]) << i;
    EXPECT_EQ(after_wait1[i + 4], -1.0f) << i + 4 << ": the newest group has not landed";
    EXPECT_EQ(after_wait0[i + 4], kSource[i + 4]) << i + 4;
    EXPECT_EQ(empty_group[i], kSource[i]) << i;
  }
}

TEST(CpAsyncEmulation, MisalignedAddressesAreErrors) {
  const std::string dst = error_of([] {
    emu::run_grid(dim3(1), dim3(1), 32, [] {
      auto* s = static_cast<float*>(emu::dynamic_shared_memory());
      ptx::cp_async_16(s + 1, kSource, true);
    });
  });
  EXPECT_ERROR_CONTAINS(dst, "destination");
  EXPECT_ERROR_CONTAINS(dst, "not 16-byte aligned");
  const std::string src = error_of([] {
    emu::run_grid(dim3(1), dim3(1), 32, [] {
      auto* s = static_cast<float*>(emu::dynamic_shared_memory());
      ptx::cp_async_16(s, kSource + 2, true);
    });
  });
  EXPECT_ERROR_CONTAINS(src, "source");
}

TEST(CpAsyncEmulation, ReturningWithCopiesPendingIsAnError) {
  auto run = [](bool commit, bool wait) {
    return error_of([=] {
      emu::run_grid(dim3(1), dim3(32), 512, [=] {
        auto* s = static_cast<float*>(emu::dynamic_shared_memory());
        ptx::cp_async_16(s + 4 * threadIdx.x, kSource, true);
        if (commit) ptx::cp_async_commit();
        if (wait) ptx::cp_async_wait<0>();
      });
    });
  };
  EXPECT_ERROR_CONTAINS(run(false, false), "cp.async copies pending at thread exit: missing cp_async_wait");
  EXPECT_ERROR_CONTAINS(run(true, false), "cp.async copies pending at thread exit: missing cp_async_wait");
  EXPECT_EQ(run(true, true), "");
  // Empty groups left committed are harmless: nothing is in flight.
  EXPECT_EQ(error_of([] { emu::run_grid(dim3(1), dim3(1), [] { ptx::cp_async_commit(); }); }), "");
}

// =============================================================================================
// A cp.async pipeline: kStages shared-memory stages, each thread copying one 16-byte chunk of a
// tile per stage and summing a chunk another warp copied (so the result depends on the wait and
// the barrier). The planted bugs drop the wait, the barrier, or break the swizzle.

constexpr int kStages = 3, kPipelineThreads = 64, kChunks = kPipelineThreads, kTiles = 7, kPipelineBlocks = 2;
enum class PipelineBug { none, no_wait, no_barrier, non_bijective_swizzle };

// Chunk c's slot in its stage: rows of 8 chunks, XOR-swizzled within the row (a bijection); the
// bug ORs instead, mapping two chunks to one slot.
template <PipelineBug kBug>
int stage_slot(int c) {
  const int in_row = kBug == PipelineBug::non_bijective_swizzle ? (c | (c >> 3)) & 7 : (c ^ (c >> 3)) & 7;
  return (c & ~7) | in_row;
}

float4 operator+(const float4& a, const float4& b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// out[block][t] = the sum over the block's tiles of chunk kChunks - 1 - t.
template <PipelineBug kBug>
__global__ void pipelined_sum(const float4* tiles, float4* out) {
  auto* const stages = static_cast<float4*>(emu::dynamic_shared_memory());  // [kStages][kChunks]
  const int t = static_cast<int>(threadIdx.x);
  const float4* const mine = tiles + static_cast<int>(blockIdx.x) * kTiles * kChunks;
  auto load = [&](int tile) {
    if (tile < kTiles)
      ptx::cp_async_16(stages + tile % kStages * kChunks + stage_slot<kBug>(t), mine + tile * kChunks + t, true);
    ptx::cp_async_commit();  // an empty group past the end keeps the group count of the wait right
  };
  for (int s = 0; s < kStages - 1; ++s) load(s);
  float4 sum = make_float4(0, 0, 0, 0);
  for (int tile = 0; tile < kTiles; ++tile) {
    if (kBug != PipelineBug::no_wait) ptx::cp_async_wait<kStages - 2>();  // this thread's chunk of `tile` is in
    if (kBug != PipelineBug::no_barrier) __syncthreads();  // everyone's is, and the stage refilled next is free
    load(tile + kStages - 1);
    sum = sum + stages[tile % kStages * kChunks + stage_slot<kBug>(kChunks - 1 - t)];
  }
  ptx::cp_async_wait<0>();
  out[static_cast<int>(blockIdx.x) * kChunks + t] = sum;
}

template <PipelineBug kBug>
std::vector<float> run_pipeline(const std::vector<float>& tiles, emu::Order order) {
  std::vector<float> out(kPipelineBlocks * kChunks * 4, -7.0f);
  emu::set_order(order);
  emu::launch(pipelined_sum<kBug>, dim3(kPipelineBlocks), dim3(kPipelineThreads), kStages * kChunks * 16, nullptr,
              reinterpret_cast<const float4*>(tiles.data()), reinterpret_cast<float4*>(out.data()));
  emu::set_order(emu::Order::forward);
  return out;
}

struct PipelineData {
  std::vector<float> tiles, expected;
  PipelineData() : tiles(kPipelineBlocks * kTiles * kChunks * 4), expected(kPipelineBlocks * kChunks * 4, 0.0f) {
    std::mt19937 rng(31);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (float& x : tiles) x = dist(rng);
    for (int b = 0; b < kPipelineBlocks; ++b)
      for (int tile = 0; tile < kTiles; ++tile)  // in the kernel's order: the same float sums
        for (int t = 0; t < kChunks; ++t)
          for (int e = 0; e < 4; ++e)
            expected[(b * kChunks + t) * 4 + e] += tiles[((b * kTiles + tile) * kChunks + kChunks - 1 - t) * 4 + e];
  }
};

// alignas(16) storage for the float4 views: std::vector<float> of this size is 16-byte aligned
// with glibc's allocator; checked, since cp.async needs it.
void expect_aligned(const std::vector<float>& v) {
  ASSERT_EQ(reinterpret_cast<uintptr_t>(v.data()) % 16, 0u);
}

TEST(CpAsyncPipelineEmulation, CorrectInBothOrders) {
  const PipelineData data;
  expect_aligned(data.tiles);
  for (const emu::Order order : {emu::Order::forward, emu::Order::reverse}) {
    emu::reset_stats();
    const std::vector<float> out = run_pipeline<PipelineBug::none>(data.tiles, order);
    EXPECT_EQ(out, data.expected) << (order == emu::Order::forward ? "forward" : "reverse");
    EXPECT_EQ(emu::stats().cp_async, kPipelineBlocks * kPipelineThreads * kTiles);
  }
}

TEST(CpAsyncPipelineEmulation, MissingWaitIsCaught) {
  const PipelineData data;
  for (const emu::Order order : {emu::Order::forward, emu::Order::reverse})
    EXPECT_NE(run_pipeline<PipelineBug::no_wait>(data.tiles, order), data.expected);
}

TEST(CpAsyncPipelineEmulation, MissingBarrierIsCaughtInSomeOrder) {
  const PipelineData data;
  const bool forward_wrong = run_pipeline<PipelineBug::no_barrier>(data.tiles, emu::Order::forward) != data.expected;
  const bool reverse_wrong = run_pipeline<PipelineBug::no_barrier>(data.tiles, emu::Order::reverse) != data.expected;
  EXPECT_TRUE(forward_wrong || reverse_wrong);
}

TEST(CpAsyncPipelineEmulation, NonBijectiveSwizzleIsCaught) {
  const PipelineData data;
  EXPECT_NE(run_pipeline<PipelineBug::non_bijective_swizzle>(data.tiles, emu::Order::forward), data.expected);
}

// =============================================================================================
// Dynamic shared memory

TEST(DynamicSharedMemoryEmulation, PoisonedAtLaunchAlignedAndKeptAcrossBlocks) {
  constexpr size_t kBytes = 4096;
  for (int launch = 0; launch < 2; ++launch) {
    std::vector<int> blocks_seen;
    bool aligned = true, nan_at_start = true, kept = true;
    emu::run_grid(dim3(3), dim3(32), kBytes, [&] {
      auto* f = static_cast<float*>(emu::dynamic_shared_memory());
      if (threadIdx.x != 0) return;
      aligned = aligned && reinterpret_cast<uintptr_t>(f) % 128 == 0;
      if (blocks_seen.empty()) {
        for (size_t i = 0; i < kBytes / 4; ++i) nan_at_start = nan_at_start && bits_of(f[i]) == 0xffffffffu;
      } else {
        kept = kept && f[kBytes / 4 - 1] == static_cast<float>(blocks_seen.back());  // the previous block's
      }
      blocks_seen.push_back(static_cast<int>(blockIdx.x));
      f[kBytes / 4 - 1] = static_cast<float>(blockIdx.x);
    });
    EXPECT_EQ(blocks_seen.size(), 3u);
    EXPECT_TRUE(aligned);
    EXPECT_TRUE(nan_at_start) << "launch " << launch << ": not poisoned (the previous launch's data?)";
    EXPECT_TRUE(kept) << "shared memory is not cleared between blocks";
  }
}

TEST(DynamicSharedMemoryEmulation, UsingItWithoutAskingIsAnError) {
  const std::string message = error_of([] { emu::run_grid(dim3(1), dim3(1), [] { emu::dynamic_shared_memory(); }); });
  EXPECT_ERROR_CONTAINS(message, "0 bytes");
}

template <int kId>
__global__ void write_last_byte(size_t bytes) {
  static_cast<unsigned char*>(emu::dynamic_shared_memory())[bytes - 1] = kId;  // kId: distinct bodies
}

TEST(DynamicSharedMemoryEmulation, MoreThan48KiBNeedsTheKernelsAttribute) {
  constexpr int k64KiB = 64 * 1024;
  const auto launch = [](auto kernel, size_t bytes) {
    return error_of([&] { emu::launch(kernel, dim3(1), dim3(32), bytes, nullptr, bytes); });
  };
  EXPECT_EQ(launch(write_last_byte<1>, 48 * 1024), "");
  EXPECT_ERROR_CONTAINS(launch(write_last_byte<1>, k64KiB), "cudaFuncSetAttribute");
  // The attribute is per kernel: raising write_last_byte<2>'s leaves <1> at 48 KiB.
  EXPECT_EQ(cudaFuncSetAttribute(write_last_byte<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, k64KiB), cudaSuccess);
  EXPECT_EQ(launch(write_last_byte<2>, k64KiB), "");
  EXPECT_ERROR_CONTAINS(launch(write_last_byte<2>, k64KiB + 16), "cudaFuncAttributeMaxDynamicSharedMemorySize");
  EXPECT_ERROR_CONTAINS(launch(write_last_byte<1>, k64KiB), "cudaFuncSetAttribute");
}

TEST(DynamicSharedMemoryEmulation, TheAttributeStopsAt227KiB) {
  constexpr int kMax = 227 * 1024;
  EXPECT_EQ(cudaFuncSetAttribute(write_last_byte<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMax), cudaSuccess);
  EXPECT_EQ(error_of([] { emu::launch(write_last_byte<3>, dim3(1), dim3(32), kMax, nullptr, size_t{kMax}); }), "");
  EXPECT_EQ(cudaFuncSetAttribute(write_last_byte<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMax + 1),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaFuncSetAttribute(write_last_byte<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, -1),
            cudaErrorInvalidValue);
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
  const std::string checked = error_of([] {
    CONVNET_CUDA_CHECK(cudaFuncSetAttribute(write_last_byte<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMax + 1));
  });
  EXPECT_ERROR_CONTAINS(checked, "cudaFuncSetAttribute(write_last_byte<3>");
  EXPECT_ERROR_CONTAINS(checked, "invalid argument");
  // The failed call left the attribute as it was.
  EXPECT_EQ(error_of([] { emu::launch(write_last_byte<3>, dim3(1), dim3(32), kMax, nullptr, size_t{kMax}); }), "");
  EXPECT_ERROR_CONTAINS(error_of([] { emu::run_grid(dim3(1), dim3(1), kMax + 1, [] {}); }), "227 KiB");
}

// The kernels of ptx_test_kernels.cu, through cuda_to_cpp.py's rewrite of `extern __shared__`.
TEST(DynamicSharedMemoryEmulation, RewrittenExternSharedKernels) {
  constexpr int kReversed = 4096;  // chunks: 64 KiB
  std::vector<float> in(kReversed * 4), out(kReversed * 4, 0.0f);
  expect_aligned(in);
  expect_aligned(out);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  EXPECT_ERROR_CONTAINS(error_of([&] { reverse_chunks(in.data(), out.data(), kReversed, 48 * 1024); }),
                        "cudaFuncAttributeMaxDynamicSharedMemorySize");
  EXPECT_ERROR_CONTAINS(error_of([&] { reverse_chunks(in.data(), out.data(), kReversed, 300 * 1024); }),
                        "cudaFuncSetAttribute");
  reverse_chunks(in.data(), out.data(), kReversed, kReversed * 16);
  for (int c = 0; c < kReversed; ++c)
    for (int e = 0; e < 4; ++e) ASSERT_EQ(out[c * 4 + e], in[(kReversed - 1 - c) * 4 + e]) << c;

  std::vector<uint32_t> fresh(300, 0);
  read_fresh_dynamic_shared(fresh.data(), 300);
  for (uint32_t w : fresh) ASSERT_EQ(w, 0xffffffffu);

  std::vector<float> filled(100, 0.0f);
  fill_deduced(filled.data(), 2.5f, 100, 400);
  for (float x : filled) ASSERT_EQ(x, 2.5f);
  EXPECT_ERROR_CONTAINS(error_of([&] { fill_deduced(filled.data(), 2.5f, 100, 64 * 1024); }),
                        "explicit template arguments");
}

}  // namespace
}  // namespace convnet::emu_test
