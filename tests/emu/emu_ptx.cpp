// ldmatrix, mma.sync and the conversions on the emulator (emu_ptx.h). Lane l has group g = l / 4
// and thread-in-group t = l % 4 throughout, as in the PTX ISA's fragment tables.
#include "tests/emu/emu_ptx.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>

#include "tests/emu/emu_runtime.h"

namespace emu {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr uint32_t kTf32Mask = 0xffffe000u;  // sign, exponent and the 10 mantissa bits TF32 keeps

unsigned lane_id() {
  return linear_thread_index() % kWarpSize;
}

std::string hex_address(const void* address) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", address);
  return text;
}

// ---------------------------------------------------------------------------------------------
// ldmatrix

const char* ldmatrix_name(int matrices, bool trans) {
  switch (matrices) {
    case 1:
      return trans ? "ldmatrix.x1.trans" : "ldmatrix.x1";
    case 2:
      return trans ? "ldmatrix.x2.trans" : "ldmatrix.x2";
    case 4:
      return trans ? "ldmatrix.x4.trans" : "ldmatrix.x4";
    default:
      throw Error("ldmatrix with " + std::to_string(matrices) + " matrices (1, 2 or 4)");
  }
}

uint32_t load_u32(const void* address, unsigned byte_offset) {
  uint32_t v;
  std::memcpy(&v, static_cast<const unsigned char*>(address) + byte_offset, sizeof v);
  return v;
}

uint16_t load_u16(const void* address, unsigned byte_offset) {
  uint16_t v;
  std::memcpy(&v, static_cast<const unsigned char*>(address) + byte_offset, sizeof v);
  return v;
}

// What `lane` receives from one 8x8 b16 matrix whose rows are at rows[0..7]: the 32-bit word
// (row g, word t).
uint32_t matrix_word(std::span<const void* const, 8> rows, unsigned lane) {
  return load_u32(rows[lane / 4], 4 * (lane % 4));
}

// With .trans: the 16-bit elements (row 2t, column g) in the low half, (row 2t + 1, column g) in
// the high half, i.e. the word (row g, word t) of the transposed matrix.
uint32_t transposed_matrix_word(std::span<const void* const, 8> rows, unsigned lane) {
  const unsigned g = lane / 4, t = lane % 4;
  const uint32_t lo = load_u16(rows[2 * t], 2 * g), hi = load_u16(rows[2 * t + 1], 2 * g);
  return lo | (hi << 16);
}

// ---------------------------------------------------------------------------------------------
// mma.sync

// Where a fragment element sits in its matrix.
struct Position {
  unsigned row, col;
};

// m16n8k8 .tf32: A (16x8) register r holds (g + 8 (r % 2), t + 4 (r / 2)); B (8x8) register r
// holds (k = t + 4 r, n = g).
Position tf32_a(unsigned lane, unsigned r) {
  return {lane / 4 + 8 * (r % 2), lane % 4 + 4 * (r / 2)};
}
Position tf32_b(unsigned lane, unsigned r) {
  return {lane % 4 + 4 * r, lane / 4};
}
// m16n8k16 .bf16, half h of register r (0: the low 16 bits): A (16x16) holds
// (g + 8 (r % 2), 2t + 8 (r / 2) + h); B (16x8) holds (k = 2t + 8 r + h, n = g).
Position bf16_a(unsigned lane, unsigned r, unsigned h) {
  return {lane / 4 + 8 * (r % 2), 2 * (lane % 4) + 8 * (r / 2) + h};
}
Position bf16_b(unsigned lane, unsigned r, unsigned h) {
  return {2 * (lane % 4) + 8 * r + h, lane / 4};
}
// C and D (16x8 f32) of both shapes: register r holds (g + 8 (r / 2), 2t + r % 2).
Position accumulator(unsigned lane, unsigned r) {
  return {lane / 4 + 8 * (r / 2), 2 * (lane % 4) + r % 2};
}

// The hardware reads only the TF32 bits of each input register.
double tf32_value(uint32_t bits) {
  return std::bit_cast<float>(bits & kTf32Mask);
}
double bf16_value(uint32_t bits16) {
  return std::bit_cast<float>(bits16 << 16);
}

// One lane's operand registers, as the warp collective publishes them.
struct MmaOperands {
  uint32_t a[4];
  uint32_t b[2];
};

struct WarpOperands {
  MmaOperands lane[kWarpSize];
};

WarpOperands gather_operands(const char* op, const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  MmaOperands mine;
  std::copy(a, a + 4, mine.a);
  std::copy(b, b + 2, mine.b);
  WarpOperands all;
  warp_gather(kFullMask, &mine, sizeof mine, all.lane, op);
  if (lane_id() == 0) count_mma();  // one instruction per warp
  return all;
}

// The calling lane's d = a * b + c, for the whole 16xK A and Kx8 B: products exact in double,
// summed in double, rounded once.
template <unsigned K>
void lane_result(const double (&a)[16][K], const double (&b)[K][8], const float (&c)[4], float (&d)[4]) {
  const unsigned lane = lane_id();
  float result[4];
  for (unsigned r = 0; r < 4; ++r) {
    const Position p = accumulator(lane, r);
    double sum = c[r];
    for (unsigned k = 0; k < K; ++k) sum += a[p.row][k] * b[k][p.col];
    result[r] = static_cast<float>(sum);
  }
  std::copy(result, result + 4, d);  // after every read of c, which d may alias
}

}  // namespace

int ldmatrix_phase_conflicts(std::span<const void* const, 8> rows) {
  // A 16-byte-aligned row covers the 4 banks of group (address / 16) % 8. Distinct rows in one
  // group are served one wavefront each; equal addresses share theirs.
  int rows_in_group[8] = {};
  for (size_t i = 0; i < rows.size(); ++i) {
    bool repeat = false;  // a broadcast of an address already counted
    for (size_t j = 0; j < i; ++j) repeat = repeat || rows[j] == rows[i];
    if (!repeat) ++rows_in_group[reinterpret_cast<uintptr_t>(rows[i]) / 16 % 8];
  }
  return *std::max_element(rows_in_group, rows_in_group + 8) - 1;
}

void ldmatrix(uint32_t* regs, int matrices, bool trans, const void* row) {
  const char* op = ldmatrix_name(matrices, trans);
  const unsigned lane = lane_id();
  const bool used = lane < 8u * static_cast<unsigned>(matrices);  // the other lanes' addresses are ignored
  if (used && reinterpret_cast<uintptr_t>(row) % 16 != 0)
    throw Error(std::string(op) + ": lane " + std::to_string(lane) + " (thread " +
                std::to_string(linear_thread_index()) + ") gives the row address " + hex_address(row) +
                ", which is not 16-byte aligned");
  warp_collective(kFullMask, op, used ? row : nullptr, [&](const void* const* lanes) {
    int64_t conflicts = 0;
    for (int i = 0; i < matrices; ++i) {
      const std::span<const void* const, 8> rows(lanes + 8 * i, 8);  // matrix i: lanes 8i..8i+7
      regs[i] = trans ? transposed_matrix_word(rows, lane) : matrix_word(rows, lane);
      conflicts += ldmatrix_phase_conflicts(rows);
    }
    if (lane == 0) count_ldmatrix(conflicts);  // one instruction per warp
  });
}

void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  const WarpOperands all = gather_operands("mma.sync.m16n8k8.tf32", a, b);
  double am[16][8], bm[8][8];
  for (unsigned l = 0; l < kWarpSize; ++l) {
    for (unsigned r = 0; r < 4; ++r) {
      const Position p = tf32_a(l, r);
      am[p.row][p.col] = tf32_value(all.lane[l].a[r]);
    }
    for (unsigned r = 0; r < 2; ++r) {
      const Position p = tf32_b(l, r);
      bm[p.row][p.col] = tf32_value(all.lane[l].b[r]);
    }
  }
  lane_result(am, bm, c, d);
}

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  const WarpOperands all = gather_operands("mma.sync.m16n8k16.bf16", a, b);
  double am[16][16], bm[16][8];
  for (unsigned l = 0; l < kWarpSize; ++l) {
    for (unsigned h = 0; h < 2; ++h) {
      for (unsigned r = 0; r < 4; ++r) {
        const Position p = bf16_a(l, r, h);
        am[p.row][p.col] = bf16_value((all.lane[l].a[r] >> (16 * h)) & 0xffffu);
      }
      for (unsigned r = 0; r < 2; ++r) {
        const Position p = bf16_b(l, r, h);
        bm[p.row][p.col] = bf16_value((all.lane[l].b[r] >> (16 * h)) & 0xffffu);
      }
    }
  }
  lane_result(am, bm, c, d);
}

uint32_t cvt_rna_tf32(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if (!std::isfinite(x)) return bits;
  // Sign-magnitude: adding half of the last kept bit rounds the magnitude half away from zero;
  // a carry out of the mantissa bumps the exponent (up to infinity), as it should.
  return (bits + 0x1000u) & kTf32Mask;
}

uint16_t cvt_rn_bf16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return static_cast<uint16_t>(((bits >> 16) & 0x8000u) | 0x7fc0u);
  const uint32_t kept_lsb = (bits >> 16) & 1u;  // a tie rounds to the even neighbour
  return static_cast<uint16_t>((bits + 0x7fffu + kept_lsb) >> 16);
}

}  // namespace emu
