// PadChannels (the option A residual shortcut): shapes and errors, the forward against a float64
// reference written from akamaster's F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, before, after)), and
// finite-difference gradients.
#include <gtest/gtest.h>

#include <vector>

#include "core/layers/layer_util.h"
#include "core/layers/pad_channels.h"
#include "tests/common/cpu_layer_test.h"
#include "tests/common/gradient_check.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::gradients_match;

class LayerPadChannels : public testing::CpuLayerTest {};

// y[n, i, j, c'] (NHWC) = x[n, i * s, j * s, c' - before] for c' in [before, before + C), else 0.
std::vector<double> reference(const Tensor& x, int s, int before, int after) {
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  const int64_t c_out = before + c + after;
  std::vector<double> y;
  for (int64_t in = 0; in < n; ++in)
    for (int64_t i = 0; i * s < h; ++i)  // x[:, :, ::s]: rows 0, s, 2s, ... below h
      for (int64_t j = 0; j * s < w; ++j)
        for (int64_t co = 0; co < c_out; ++co) {
          const int64_t ci = co - before;
          y.push_back(ci >= 0 && ci < c ? x.f32()[((in * h + i * s) * w + j * s) * c + ci] : 0.0);
        }
  return y;
}

TEST_F(LayerPadChannels, ShapesRoundOddExtentsUp) {
  PadChannels pad("shortcut", 2, 3, 4);
  EXPECT_EQ(pad.configure({7, 6, 5}), (Shape{4, 3, 12}));
  EXPECT_EQ(pad.description(), "pad_channels s2 +3+4");
  PadChannels keep("keep", 1, 8, 8);
  EXPECT_EQ(keep.configure({32, 32, 16}), (Shape{32, 32, 32}));
  PadChannels third("third", 3, 0, 0);
  EXPECT_EQ(third.configure({7, 9, 2}), (Shape{3, 3, 2}));
}

TEST_F(LayerPadChannels, ErrorsNameTheLayer) {
  EXPECT_EQ(error_of<ConfigError>([] { PadChannels("sc", 0, 1, 1); }), "sc: stride must be positive, got 0");
  EXPECT_EQ(error_of<ConfigError>([] { PadChannels("sc", 2, -1, 1); }),
            "sc: the zero channels added must not be negative, got -1 and 1");
  PadChannels flat("sc", 2, 1, 1);
  EXPECT_NE(error_of<ConfigError>([&] { flat.configure({16}); }).find("sc: expects an image input"), std::string::npos);
}

TEST_F(LayerPadChannels, ForwardMatchesThePyTorchDefinition) {
  Rng rng(3);
  struct Case {
    Shape example;
    int stride, before, after;
  };
  for (const Case& k : {Case{{7, 6, 3}, 2, 2, 3}, Case{{8, 8, 4}, 2, 2, 2}, Case{{5, 4, 2}, 1, 1, 0},
                        Case{{6, 5, 3}, 2, 0, 0}, Case{{7, 7, 2}, 3, 0, 5}}) {
    PadChannels pad("pad", k.stride, k.before, k.after);
    build(pad, k.example);
    const Tensor x = testing::random_tensor(layer_util::with_batch(2, k.example), rng);
    Tensor y = output_for(pad, 2);  // NaN: every channel, the zeros included, must be written
    pad.forward(x, y, Mode::train);
    EXPECT_TRUE(testing::close_l2(y, reference(x, k.stride, k.before, k.after), 1e-12))
        << "stride " << k.stride << " +" << k.before << "+" << k.after;
  }
}

testing::GradientCheckOptions options() {
  testing::GradientCheckOptions o;
  o.batch = 3;
  return o;
}

TEST_F(LayerPadChannels, GradientsSubsampledAndPadded) {
  PadChannels pad("pad", 2, 2, 3);
  EXPECT_TRUE(gradients_match(pad, {5, 6, 3}, *backend_, options()));
}

TEST_F(LayerPadChannels, GradientsPaddedOnly) {
  PadChannels pad("pad", 1, 1, 2);
  EXPECT_TRUE(gradients_match(pad, {3, 4, 2}, *backend_, options()));
}

TEST_F(LayerPadChannels, GradientsSubsampledOnly) {
  PadChannels pad("pad", 2, 0, 0);
  EXPECT_TRUE(gradients_match(pad, {4, 5, 2}, *backend_, options()));
}

}  // namespace
}  // namespace convnet
