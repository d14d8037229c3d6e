#include "core/cpu/image_ops.h"

#include "core/base/error.h"
#include "core/base/op_checks.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

void augment_batch(const Tensor& images, const Tensor& order, int64_t first, Tensor& out,
                   const AugmentBatchSpec& spec) {
  const AugmentGeometry g = OpChecks::cpu("augment_batch").augment_batch(images, order, first, out, spec);
  const int h = static_cast<int>(g.h), w = static_cast<int>(g.w), c = static_cast<int>(g.c);
  const int64_t image_size = g.h * g.w * g.c;
  const int32_t* indices = order.data<int32_t>() + first;
  for (int64_t i = 0; i < g.n; ++i)
    CONVNET_CHECK(indices[i] >= 0 && indices[i] < g.m, "augment_batch: order[{}] = {} outside [0, {})", first + i,
                  indices[i], g.m);
  const uint8_t* src = images.data<uint8_t>();
  float* dst = out.f32();
  parallel_for(0, g.n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t e = indices[i];
      const AugmentParams p = augment_params_for(spec.augment, spec.epoch, e, h, w);
      const uint8_t* image = src + e * image_size;
      float* o = dst + i * image_size;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          for (int ch = 0; ch < c; ++ch)
            *o++ = augmented_pixel(image, y, x, ch, h, w, c, p, spec.augment.pad_mode, spec.augment.cutout,
                                   spec.mean[ch], spec.std[ch]);
    }
  });
}

void image_view(const Tensor& x, Tensor& y, const ImageView& view) {
  OpChecks::cpu("image_view").image_view(x, y, view);
  const int h = static_cast<int>(x.dim(1)), w = static_cast<int>(x.dim(2));
  const int64_t c = x.dim(3);
  const float* src = x.f32();
  float* dst = y.f32();
  parallel_for(0, x.dim(0), 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* image = src + n * h * w * c;
      float* o = dst + n * h * w * c;
      for (int oy = 0; oy < h; ++oy) {
        const int sy = crop_source(oy, view.shift_y, h, view.pad_mode);
        for (int ox = 0; ox < w; ++ox) {
          const int sx = crop_source(flip_source(ox, w, view.flip), view.shift_x, w, view.pad_mode);
          for (int64_t ch = 0; ch < c; ++ch)
            *o++ = (sy < 0 || sx < 0) ? 0.0f : image[(static_cast<int64_t>(sy) * w + sx) * c + ch];
        }
      }
    }
  });
}

}  // namespace convnet::cpu
