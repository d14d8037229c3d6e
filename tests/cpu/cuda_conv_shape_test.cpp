// The host side of the CUDA convolution kernels (cuda/conv_shape.cpp): output sizes, shape
// validation, the v2 tiling and split-K plan, and the backward-filter workspace size. Pure host
// arithmetic, so it runs without a GPU. Expected values are worked out by hand from the formulas
// and the policy documented in cuda/conv_kernels.h.
#include <gtest/gtest.h>

#ifdef CONVNET_WITH_CUDA

#include <string>

#include "core/base/error.h"
#include "cuda/conv_kernels.h"
#include "tests/common/test_util.h"

namespace convnet::cuda {
namespace {

using convnet::testing::error_of;

TEST(CudaConvShape, OutputSizeSamePadding) {
  const ConvShape s = ConvShape::make(128, 32, 32, 3, 64, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  EXPECT_EQ(s.p, 32);
  EXPECT_EQ(s.q, 32);
  EXPECT_EQ(s.n, 128);
  EXPECT_EQ(s.c, 3);
  EXPECT_EQ(s.k, 64);
  EXPECT_EQ(s.forward_flops(), 2LL * 128 * 32 * 32 * 64 * 3 * 3 * 3);
}

TEST(CudaConvShape, OutputSizeStrideDilationPadding) {
  // (7 + 2 - 3) / 2 + 1 = 4, (9 + 2 - 3) / 2 + 1 = 5
  ConvShape s = ConvShape::make(2, 7, 9, 3, 5, 3, 3, testing::conv_params(2, 2, 1, 1, 1, 1));
  EXPECT_EQ(s.p, 4);
  EXPECT_EQ(s.q, 5);
  // 5x5 dilated by 2 spans 9: (11 + 4 - 9) + 1 = 7, (10 + 4 - 9) + 1 = 6
  s = ConvShape::make(3, 11, 10, 6, 7, 5, 5, testing::conv_params(1, 1, 2, 2, 2, 2));
  EXPECT_EQ(s.p, 7);
  EXPECT_EQ(s.q, 6);
  // Different per axis: h: (13 - 3) / 3 + 1 = 4; w: 2 taps dilated by 2 span 3: (6 + 4 - 3) + 1 = 8
  s = ConvShape::make(1, 13, 6, 4, 4, 3, 2, testing::conv_params(3, 1, 0, 2, 1, 2));
  EXPECT_EQ(s.p, 4);
  EXPECT_EQ(s.q, 8);
  // Stride that does not divide: (8 + 0 - 2) / 3 + 1 = 3
  s = ConvShape::make(1, 8, 8, 1, 1, 2, 2, testing::conv_params(3, 3, 0, 0, 1, 1));
  EXPECT_EQ(s.p, 3);
  EXPECT_EQ(s.q, 3);
  EXPECT_EQ(s.forward_flops(), 2LL * 1 * 3 * 3 * 1 * 2 * 2 * 1);
}

TEST(CudaConvShape, RejectsInvalidProblems) {
  EXPECT_NE(error_of([] {
              ConvShape::make(1, 2, 2, 1, 1, 5, 5, testing::conv_params(1, 1, 0, 0, 1, 1));
            }).find("smaller than"),
            std::string::npos);
  EXPECT_NE(error_of([] { ConvShape::make(0, 4, 4, 1, 1, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1)); }).find("n=0"),
            std::string::npos);
  EXPECT_NE(error_of([] { ConvShape::make(1, 4, 4, 1, 0, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1)); }).find("k=0"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { ConvShape::make(1, 4, 4, 1, 1, 3, 3, testing::conv_params(0, 1, 1, 1, 1, 1)); }).find("stride"),
      std::string::npos);
  EXPECT_NE(
      error_of([] { ConvShape::make(1, 4, 4, 1, 1, 3, 3, testing::conv_params(1, 1, -1, 1, 1, 1)); }).find("padding"),
      std::string::npos);
  EXPECT_NE(
      error_of([] { ConvShape::make(1, 4, 4, 1, 1, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 0)); }).find("dilation"),
      std::string::npos);
  // More rows than 32-bit GEMM indices allow.
  EXPECT_NE(error_of([] {
              ConvShape::make(4096, 1024, 1024, 1, 1, 1, 1, testing::conv_params(1, 1, 0, 0, 1, 1));
            }).find("32-bit"),
            std::string::npos);
}

Conv2dParams grouped(Conv2dParams p, int groups) {
  p.groups = groups;
  return p;
}

TEST(CudaConvShape, GroupsDivideBothChannelCounts) {
  const Conv2dParams same = testing::conv_params(1, 1, 1, 1, 1, 1);
  const ConvShape s = ConvShape::make(2, 8, 8, 12, 6, 3, 3, grouped(same, 3));
  EXPECT_EQ(s.groups(), 3);
  EXPECT_EQ(s.group_c(), 4);
  EXPECT_EQ(s.group_k(), 2);
  EXPECT_EQ(s.forward_flops(), 2LL * 2 * 8 * 8 * 6 * 3 * 3 * 4);  // each output sums one group's channels
  for (const int groups : {0, -1, 4, 5})                          // 4 divides 12 but not 6
    EXPECT_NE(error_of([&] { ConvShape::make(2, 8, 8, 12, 6, 3, 3, grouped(same, groups)); }).find("groups do not"),
              std::string::npos)
        << groups;
}

TEST(CudaConvShape, NarrowGroupsAreGroupedOnesUnder8ChannelsWide) {
  const Conv2dParams same = testing::conv_params(1, 1, 1, 1, 1, 1);
  EXPECT_FALSE(conv_narrow_groups(ConvShape::make(2, 8, 8, 3, 64, 3, 3, same)));  // the RGB layer: one group
  EXPECT_TRUE(conv_narrow_groups(ConvShape::make(2, 8, 8, 32, 32, 3, 3, grouped(same, 32))));  // depthwise
  EXPECT_TRUE(conv_narrow_groups(ConvShape::make(2, 8, 8, 32, 64, 3, 3, grouped(same, 32))));  // K = 2C
  EXPECT_TRUE(conv_narrow_groups(ConvShape::make(2, 8, 8, 64, 16, 3, 3, grouped(same, 4))));   // 4 out per group
  EXPECT_FALSE(conv_narrow_groups(ConvShape::make(2, 8, 8, 16, 32, 3, 3, grouped(same, 2))));  // 8 and 16 per group
}

TEST(CudaConvShape, ValidateNamesTheOpAndTheMismatch) {
  ConvShape s = ConvShape::make(2, 8, 8, 4, 4, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  EXPECT_NO_THROW(validate_conv_shape(s, "op"));
  s.p = 7;  // a stale output size
  const std::string message = error_of([&] { validate_conv_shape(s, "conv2d_forward"); });
  EXPECT_NE(message.find("conv2d_forward"), std::string::npos) << message;
  EXPECT_NE(message.find("7x8"), std::string::npos) << message;
}

TEST(CudaConvShape, Names) {
  EXPECT_STREQ(conv_version_name(ConvVersion::v0_direct), "v0 direct");
  EXPECT_STREQ(conv_version_name(ConvVersion::v2_implicit_gemm), "v2 implicit GEMM");
  EXPECT_STREQ(conv_pass_name(ConvPass::forward), "forward");
  EXPECT_STREQ(conv_pass_name(ConvPass::backward_data), "backward-data");
  EXPECT_STREQ(conv_pass_name(ConvPass::backward_filter), "backward-filter");
}

TEST(CudaConvPlan, ForwardAndBackwardDataTiles) {
  // 32768 x 128 output: 256 blocks of 128x128 fill the GPU.
  const ConvShape big = ConvShape::make(128, 16, 16, 128, 128, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  ConvGemmPlan p = conv_gemm_plan(big, ConvPass::forward);
  EXPECT_EQ(p.gemm_m, 128 * 16 * 16);
  EXPECT_EQ(p.gemm_n, 128);
  EXPECT_EQ(p.gemm_k, 9 * 128);
  EXPECT_EQ(p.block_m, 128);
  EXPECT_EQ(p.block_n, 128);
  EXPECT_EQ(p.block_k, 8);
  EXPECT_TRUE(p.vectorized);
  EXPECT_EQ(p.splits, 1);
  EXPECT_EQ(p.k_tiles_per_split, 9 * 128 / 8);
  // 64 output channels: the small tile; 3 input channels: scalar loads.
  const ConvShape first = ConvShape::make(128, 32, 32, 3, 64, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  p = conv_gemm_plan(first, ConvPass::forward);
  EXPECT_EQ(p.block_m, 64);
  EXPECT_EQ(p.block_k, 16);
  EXPECT_FALSE(p.vectorized);
  EXPECT_EQ(p.k_tiles_per_split, 2);  // ceil(27 / 16)
  // Backward-data: one phase per (h % 2, w % 3); vector loads need both c and k multiples of 4.
  const ConvShape strided = ConvShape::make(2, 9, 9, 8, 6, 3, 3, testing::conv_params(2, 3, 1, 1, 1, 1));
  p = conv_gemm_plan(strided, ConvPass::backward_data);
  EXPECT_EQ(p.phases, 6);
  EXPECT_EQ(p.gemm_m, 2 * 9 * 9);
  EXPECT_EQ(p.gemm_n, 8);
  EXPECT_EQ(p.gemm_k, 9 * 6);
  EXPECT_FALSE(p.vectorized);
  EXPECT_EQ(conv_gemm_plan(strided, ConvPass::forward).phases, 1);
  EXPECT_TRUE(conv_gemm_plan(strided, ConvPass::forward).vectorized);
}

TEST(CudaConvPlan, BackwardFilterSplitK) {
  // VGG 64->64 at 32x32, batch 128: 64x64x16 tiles, 1 x 9 of them; 131072 / 16 = 8192 reduction
  // tiles; ceil(264 / 9) = 30 slices of ceil(8192 / 30) = 274 tiles. dbias: 128 chunks of 1024 rows.
  const ConvShape s = ConvShape::make(128, 32, 32, 64, 64, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  ConvGemmPlan p = conv_gemm_plan(s, ConvPass::backward_filter);
  EXPECT_EQ(p.gemm_m, 64);
  EXPECT_EQ(p.gemm_n, 576);
  EXPECT_EQ(p.gemm_k, 131072);
  EXPECT_EQ(p.block_m, 64);
  EXPECT_EQ(p.block_k, 16);
  EXPECT_EQ(p.splits, 30);
  EXPECT_EQ(p.k_tiles_per_split, 274);
  EXPECT_EQ(p.bias_chunks, 128);
  EXPECT_EQ(p.bias_rows_per_chunk, 1024);
  EXPECT_TRUE(p.vectorized);

  // VGG 512->512 at 4x4: 128x128x8 tiles, 4 x 36 = 144 of them, 2048 / 8 = 256 reduction tiles:
  // ceil(264 / 144) = 2 slices of 128 tiles; dbias in 2 chunks of 1024 rows.
  const ConvShape deep = ConvShape::make(128, 4, 4, 512, 512, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  p = conv_gemm_plan(deep, ConvPass::backward_filter);
  EXPECT_EQ(p.block_m, 128);
  EXPECT_EQ(p.splits, 2);
  EXPECT_EQ(p.k_tiles_per_split, 128);
  EXPECT_EQ(p.bias_chunks, 2);

  // A short reduction is never split below kConvMinTilesPerSplit tiles per slice.
  const ConvShape tiny = ConvShape::make(1, 5, 5, 1, 1, 1, 1, testing::conv_params(1, 1, 0, 0, 1, 1));
  p = conv_gemm_plan(tiny, ConvPass::backward_filter);
  EXPECT_EQ(p.splits, 1);
  EXPECT_EQ(p.k_tiles_per_split, 2);  // ceil(25 / 16)
  EXPECT_EQ(p.bias_chunks, 1);
}

TEST(CudaConvPlan, SlicesCoverTheReductionExactly) {
  const ConvShape shapes[] = {
      ConvShape::make(128, 32, 32, 3, 64, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1)),
      ConvShape::make(7, 33, 31, 5, 9, 5, 5, testing::conv_params(2, 1, 2, 2, 1, 2)),
      ConvShape::make(8, 64, 64, 12, 20, 3, 3, testing::conv_params(3, 3, 0, 0, 2, 2)),
      ConvShape::make(128, 2, 2, 512, 512, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1)),
  };
  for (const ConvShape& s : shapes) {
    const ConvGemmPlan p = conv_gemm_plan(s, ConvPass::backward_filter);
    const int64_t k_tiles = (p.gemm_k + p.block_k - 1) / p.block_k;
    ASSERT_GE(p.splits, 1);
    ASSERT_LE(p.splits, kConvMaxSplits);
    EXPECT_GE(p.splits * p.k_tiles_per_split, k_tiles);        // every tile in some slice
    EXPECT_LT((p.splits - 1) * p.k_tiles_per_split, k_tiles);  // and no slice empty
    EXPECT_GE(p.bias_chunks * p.bias_rows_per_chunk, p.gemm_k);
    EXPECT_LT((p.bias_chunks - 1) * p.bias_rows_per_chunk, p.gemm_k);
    EXPECT_LE(p.bias_chunks, kConvMaxBiasChunks);
  }
}

TEST(CudaConvPlan, GroupsRunOneGemmPerGroupOverItsChannels) {
  // 4 groups of 16 input and 32 output channels.
  const ConvShape s = ConvShape::make(128, 16, 16, 64, 128, 3, 3, grouped(testing::conv_params(1, 1, 1, 1, 1, 1), 4));
  ConvGemmPlan p = conv_gemm_plan(s, ConvPass::forward);
  EXPECT_EQ(p.groups, 4);
  EXPECT_EQ(p.gemm_m, 128 * 16 * 16);
  EXPECT_EQ(p.gemm_n, 32);
  EXPECT_EQ(p.gemm_k, 9 * 16);
  EXPECT_EQ(p.block_n, 64);  // a group's 32 columns do not fill the large tile
  EXPECT_TRUE(p.vectorized);
  p = conv_gemm_plan(s, ConvPass::backward_data);
  EXPECT_EQ(p.gemm_n, 16);
  EXPECT_EQ(p.gemm_k, 9 * 32);
  EXPECT_TRUE(p.vectorized);
  // Backward-filter: 4 groups x 1 x 3 tiles of 64x64; 32768 / 16 = 2048 reduction tiles in
  // ceil(264 / 12) = 22 slices of ceil(2048 / 22) = 94 tiles; dbias: 32 chunks of 1024 rows.
  p = conv_gemm_plan(s, ConvPass::backward_filter);
  EXPECT_EQ(p.gemm_m, 32);
  EXPECT_EQ(p.gemm_n, 9 * 16);
  EXPECT_EQ(p.gemm_k, 128 * 16 * 16);
  EXPECT_EQ(p.splits, 22);
  EXPECT_EQ(p.k_tiles_per_split, 94);
  // 22 slices of the whole dw [128][9 * 16], then 32 chunks x 128 partial dbias.
  EXPECT_EQ(conv2d_backward_filter_workspace(s), size_t{4} * (22 * 128 * 144 + 32 * 128));

  // Depthwise: one channel per group, scalar loads.
  const ConvShape d = ConvShape::make(8, 8, 8, 32, 64, 3, 3, grouped(testing::conv_params(1, 1, 1, 1, 1, 1), 32));
  for (const ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
    p = conv_gemm_plan(d, pass);
    EXPECT_EQ(p.groups, 32);
    EXPECT_FALSE(p.vectorized) << conv_pass_name(pass);
  }
  EXPECT_EQ(conv_gemm_plan(d, ConvPass::forward).gemm_n, 2);
  EXPECT_EQ(conv_gemm_plan(d, ConvPass::backward_filter).gemm_n, 9);
}

TEST(CudaConvWorkspace, BackwardFilterBytes) {
  // 30 slices x 64 x 576 partial dw, then 128 chunks x 64 partial dbias.
  const ConvShape s = ConvShape::make(128, 32, 32, 64, 64, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  EXPECT_EQ(conv2d_backward_filter_workspace(s), size_t{4} * (30 * 64 * 576 + 128 * 64));
  EXPECT_EQ(conv2d_backward_filter_workspace(s, ConvVersion::v0_direct), 0u);
  // 2 slices x 512 x 4608, then 2 chunks x 512.
  const ConvShape deep = ConvShape::make(128, 4, 4, 512, 512, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
  EXPECT_EQ(conv2d_backward_filter_workspace(deep), size_t{4} * (2 * 512 * 4608 + 2 * 512));
  // One slice and one chunk: written straight to dw and dbias.
  const ConvShape tiny = ConvShape::make(1, 5, 5, 1, 1, 1, 1, testing::conv_params(1, 1, 0, 0, 1, 1));
  EXPECT_EQ(conv2d_backward_filter_workspace(tiny), 0u);
  // dbias partials start 16-byte aligned after a partial dw whose size is not a multiple of 4:
  // 3 filters of 1x1x1, 48 x 48 = 2304 pixels -> 144 reduction tiles, at most 144 / 16 = 9 slices
  // (16 tiles each): 9 x 3 = 27 floats, padded to 28; then 2 chunks x 3.
  const ConvShape odd = ConvShape::make(1, 48, 48, 1, 3, 1, 1, testing::conv_params(1, 1, 0, 0, 1, 1));
  const ConvGemmPlan p = conv_gemm_plan(odd, ConvPass::backward_filter);
  EXPECT_EQ(p.splits, 9);
  EXPECT_EQ(p.bias_chunks, 2);
  EXPECT_EQ(detail::conv_filter_bias_offset(p, odd), 28);
  EXPECT_EQ(conv2d_backward_filter_workspace(odd), size_t{4} * (28 + 2 * 3));
}

}  // namespace
}  // namespace convnet::cuda

#endif  // CONVNET_WITH_CUDA
