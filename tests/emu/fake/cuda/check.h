// Emulation stand-in for cuda/check.h (found first on the emulation test's include path). The
// emulator validates each launch itself and throws emu::Error, so there is nothing to check after
// one. Only what the convolution kernels use is defined: code calling any other CUDA runtime
// function fails to compile here, which is the signal to extend the emulation.
#pragma once

#define CONVNET_CUDA_CHECK_LAUNCH(kernel) ((void)(kernel))
