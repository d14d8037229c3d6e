#include "core/base/precision.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/base/error.h"

namespace convnet {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::fp32:
      return "fp32";
    case Precision::tf32:
      return "tf32";
    case Precision::bf16:
      return "bf16";
  }
  return "unknown precision";
}

Precision parse_precision(const std::string& text, const std::string& what) {
  for (const Precision p : {Precision::fp32, Precision::tf32, Precision::bf16})
    if (text == precision_name(p)) return p;
  throw ConfigError(fmt::format("{}: expected fp32, tf32 or bf16, got '{}'", what, text));
}

void round_operand(const float* in, float* out, int64_t count, Precision p) {
  if (p == Precision::tf32)
    for (int64_t i = 0; i < count; ++i) out[i] = round_to_tf32(in[i]);
  else if (p == Precision::bf16)
    for (int64_t i = 0; i < count; ++i) out[i] = round_to_bf16(in[i]);
  else if (in != out)
    std::copy(in, in + count, out);
}

void widen_bf16(const uint16_t* in, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = from_bf16_bits(in[i]);
}

}  // namespace convnet
