// The arithmetic of convolutions and linear layers (train.precision), and the roundings it implies.
//
//   fp32  fp32 operands, fp32 accumulation (the default; strict, no tensor cores)
//   tf32  each operand rounded to TF32 (10 mantissa bits, round to nearest, ties away from zero:
//         cvt.rna.tf32.f32) as it enters the multiply; fp32 accumulation and outputs
//   bf16  operands are bf16 values (x, w and dy rounded to nearest even, as when stored in bf16),
//         fp32 accumulation; y and dx rounded to bf16 (their storage type); dw, dbias, and every
//         other layer's arithmetic stay fp32
// The CPU backend computes each precision by rounding exactly as the GPU kernels' inputs and
// outputs are rounded, then in fp32, so the two are compared like with like.
#pragma once

#include <bit>
#include <cstdint>
#include <string>

namespace convnet {

enum class Precision { fp32, tf32, bf16 };
const char* precision_name(Precision p);  // "fp32", "tf32", "bf16"
// "fp32" | "tf32" | "bf16"; throws ConfigError naming `what` for anything else.
Precision parse_precision(const std::string& text, const std::string& what);

// x rounded to TF32, as a float (cvt.rna.tf32.f32). NaN and infinities pass unchanged.
inline float round_to_tf32(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return x;
  return std::bit_cast<float>((bits + 0x1000u) & 0xffffe000u);
}

// The bf16 bit pattern nearest x (ties to even); NaN stays a quiet NaN of the same sign.
inline uint16_t to_bf16_bits(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}
inline float from_bf16_bits(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}
inline float round_to_bf16(float x) {
  return from_bf16_bits(to_bf16_bits(x));
}

// out[i] = in[i] rounded as an operand of `p` (fp32: copied), for i < count; in may equal out.
void round_operand(const float* in, float* out, int64_t count, Precision p);
// out[i] = the value of the bf16 in[i] (exact), for i < count.
void widen_bf16(const uint16_t* in, float* out, int64_t count);

}  // namespace convnet
