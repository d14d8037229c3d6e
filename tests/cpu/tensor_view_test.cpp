// Tensor views: reshaped() and leading() share their tensor's storage.
#include <gtest/gtest.h>

#include "core/base/error.h"
#include "core/base/tensor.h"

namespace convnet {
namespace {

TEST(TensorView, LeadingViewsTheFirstElementsInPlace) {
  Tensor t = Tensor::from_vector({6}, {0, 1, 2, 3, 4, 5});
  Tensor v = t.leading({2, 2});
  EXPECT_EQ(v.shape(), (Shape{2, 2}));
  EXPECT_EQ(v.numel(), 4);
  EXPECT_EQ(v.raw(), t.raw());
  v.f32()[3] = 30;
  EXPECT_EQ(t.f32()[3], 30);
  EXPECT_EQ(t.leading({6}).numel(), 6);
  EXPECT_THROW((void)t.leading({7}), Error);
}

}  // namespace
}  // namespace convnet
