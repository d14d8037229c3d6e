// Emulation stand-in for the CUDA runtime API header: the one type cuda/conv_kernels.h uses.
// Streams are opaque and ignored: every emulated launch finishes before it returns, which is a
// valid schedule of any single stream.
#pragma once

struct CUstream_st;
typedef CUstream_st* cudaStream_t;
