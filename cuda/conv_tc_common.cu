// The split-K reduction shared by the v4 passes: the slices' fp32 partials added in slice order,
// then the epilogue (bias, activation, rounding to the output type).
#include <algorithm>

#include "cuda/conv_tc_common.cuh"

namespace convnet::cuda::tc {

template <class O>
void sum_slices(const float* partial, O* out, int64_t count, int columns, int splits, Epilogue ep,
                cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(count, kThreads), 4096);
  sum_slices_kernel<O>
      <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(partial, out, count, columns, splits, ep);
  CONVNET_CUDA_CHECK_LAUNCH("conv sum_slices_kernel (v4)");
}

template void sum_slices<float>(const float*, float*, int64_t, int, int, Epilogue, cudaStream_t);
template void sum_slices<uint16_t>(const float*, uint16_t*, int64_t, int, int, Epilogue, cudaStream_t);

}  // namespace convnet::cuda::tc
