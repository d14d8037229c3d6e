#include "core/cpu/copy_channels.h"

#include <algorithm>

#include "core/base/op_checks.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

void copy_channels(const Tensor& src, int64_t src_offset, Tensor& dst, int64_t dst_offset, int64_t channels) {
  const int64_t rows = OpChecks::cpu("copy_channels").copy_channels(src, src_offset, dst, dst_offset, channels);
  const int64_t cs = src.dim(-1), cd = dst.dim(-1);
  const float* sp = src.f32() + src_offset;
  float* dp = dst.f32() + dst_offset;
  parallel_for(0, rows, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(channels, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::copy_n(sp + r * cs, channels, dp + r * cd);
  });
}

}  // namespace convnet::cpu
