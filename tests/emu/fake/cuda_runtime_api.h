// Emulation stand-in for the CUDA runtime API header: the types cuda/*_kernels.h use.
// Streams are opaque and ignored: every emulated launch finishes before it returns, which is a
// valid schedule of any single stream.
#pragma once

#include "tests/emu/emu_runtime.h"  // dim3, which the real header declares too (cuda/reduce_kernels.h)

struct CUstream_st;
typedef CUstream_st* cudaStream_t;
