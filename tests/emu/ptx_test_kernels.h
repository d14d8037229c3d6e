// Host entry points of tests/emu/ptx_test_kernels.cu, for tests/emu/ptx_emulation_test.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace convnet::emu_test {

// out[i] = in[chunks - 1 - i] for `chunks` 16-byte chunks (4 floats), staged through `chunks * 16`
// bytes of dynamic shared memory with cp.async. max_dynamic_shared_bytes > 0 first sets the
// kernel's cudaFuncAttributeMaxDynamicSharedMemorySize to it (through CONVNET_CUDA_CHECK).
void reverse_chunks(const float* in, float* out, int chunks, int max_dynamic_shared_bytes);

// out[0..words-1] = the first `words` 32-bit words of the dynamic shared memory, unwritten.
void read_fresh_dynamic_shared(uint32_t* out, int words);

// out[0..n-1] = value through `shared_bytes` of dynamic shared memory, launched without template
// arguments (a deduced launch).
void fill_deduced(float* out, float value, int n, size_t shared_bytes);

}  // namespace convnet::emu_test
