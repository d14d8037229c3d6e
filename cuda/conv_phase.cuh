// The stride phases of backward-data (private to cuda/conv_*backward_data.cu): whether filter tap
// r can reach input row h depends only on h % stride_h, so the input pixels are grouped by phase
// (h % stride_h, w % stride_w) and each phase's GEMM reduces over just the taps that hit it.
#pragma once

#include <cuda_runtime.h>

#include "cuda/conv_gemm_common.cuh"

namespace convnet::cuda::gemm {

// The taps of one axis that hit rows h with h % stride == phase: r = first + j*step, j < count.
struct Taps {
  int first = 0, step = 1, count = 0;
};

__device__ inline Taps taps_for_phase(int phase, int pad, int dil, int stride, int extent) {
  int a = stride, b = dil;  // step = stride / gcd(stride, dil)
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  Taps taps;
  taps.step = stride / a;
  // r*dil = phase + pad (mod stride) has solutions forming one class mod `step`, if any.
  for (int r = 0; r < extent && r < taps.step; ++r) {
    const int rem = ((phase + pad - r * dil) % stride + stride) % stride;
    if (rem == 0) {
      taps.first = r;
      taps.count = (extent - 1 - r) / taps.step + 1;
      break;
    }
  }
  return taps;
}

// One stride phase: its pixels and the taps that hit them.
struct Phase {
  int h0, w0;  // h % stride_h, w % stride_w
  int hp, wp;  // pixels per image of this phase along h and w
  Taps tr, ts;
};

__device__ inline Phase make_phase(const Geometry& g, int z) {
  Phase ph;
  ph.h0 = z / g.stride_w;
  ph.w0 = z % g.stride_w;
  ph.hp = ph.h0 < g.h ? (g.h - ph.h0 + g.stride_h - 1) / g.stride_h : 0;
  ph.wp = ph.w0 < g.w ? (g.w - ph.w0 + g.stride_w - 1) / g.stride_w : 0;
  ph.tr = taps_for_phase(ph.h0, g.pad_h, g.dil_h, g.stride_h, g.r);
  ph.ts = taps_for_phase(ph.w0, g.pad_w, g.dil_w, g.stride_w, g.s);
  return ph;
}

// Phase-local row m -> (n, h, w) of dx.
struct Pixel {
  int n, h, w;
};
__device__ inline Pixel phase_pixel(const Geometry& g, const Phase& ph, int m) {
  const int ww = m % ph.wp, t = m / ph.wp;
  const int hh = t % ph.hp, n = t / ph.hp;
  return Pixel{n, ph.h0 + hh * g.stride_h, ph.w0 + ww * g.stride_w};
}

}  // namespace convnet::cuda::gemm
