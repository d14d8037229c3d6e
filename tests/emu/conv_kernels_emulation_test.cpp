// Our CUDA convolution kernels (cuda/conv_direct.cu, cuda/conv_gemm_*.cu), v0 direct and v2
// implicit GEMM, run on the CPU under the fiber emulator (tests/emu/emu_runtime.h) and checked
// against the float64 reference convolutions of tests/common/naive_ops.h. The kernel sources are
// compiled as they are, launch syntax aside (tests/emu/cuda_to_cpp.py), so every commit checks
// them on machines without a GPU; tests/gpu/ checks them on the device.
//
// Each case runs all three passes (forward with or without bias, backward-data, backward-filter
// with or without dbias) for both versions, on a fixed list of edge cases plus random problems
// from a fixed seed. v2 runs with the plan conv_gemm_plan() picks, or with the block tile, the
// split-K slice count and the dbias chunk count forced, so small problems reach the paths that
// only large ones take naturally. Grouped and depthwise problems (Conv2dParams::groups) have their
// own fixed and random cases. Every output is poisoned with NaN first and every buffer has
// NaN guard zones on both sides: a skipped element, an out-of-bounds read (NaN flows into the
// result) or an out-of-bounds write (a guard changes) fails. v2 then runs again with blocks and
// threads in reverse order and a different poison, and must give the same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/backend.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "cuda/conv_kernels.h"
#include "tests/common/naive_ops.h"
#include "tests/common/test_util.h"
#include "tests/emu/emu_runtime.h"

namespace convnet::cuda {
namespace {

constexpr uint64_t kSeed = 0x5eed0c0feeULL;
constexpr double kTolV0 = 1e-6;  // v0 sums in double and rounds once
constexpr double kTolV2 = 1e-5;  // v2 sums in float
// A quiet NaN with a payload no computation produces: the guard zones, checked bit for bit.
constexpr uint32_t kGuardBits = 0x7fc0dead;
constexpr size_t kGuardFloats = 64;
// The second v2 run's poison for outputs and workspace: another value, so a result that depends on
// memory a kernel reads before writing it differs between the runs.
constexpr float kSecondPoison = -1.25e30f;

// The buffers of one problem, for the misalignment mask.
enum Buf : unsigned { kX, kW, kBias, kY, kDy, kDx, kDw, kDbias, kWorkspace, kBufCount };
constexpr const char* kBufNames[kBufCount] = {"x", "w", "bias", "y", "dy", "dx", "dw", "dbias", "ws"};
constexpr unsigned kAllBufs = (1u << kBufCount) - 1;

struct Case {
  std::string label;  // what the case is for (fixed cases), printed with every failure
  int n = 1, h = 1, w = 1, c = 1, k = 1, r = 1, s = 1;
  Conv2dParams p;  // p.groups: w is [k, r, s, c / groups]
  bool bias = true;
  // v2 overrides; 0 keeps conv_gemm_plan()'s choice.
  int tile = 0;           // 64 or 128: the block tile of all three passes
  int splits = 0;         // backward-filter reduction slices (fewer if the reduction is shorter)
  int bias_chunks = 0;    // dbias row chunks (fewer if there are fewer rows)
  unsigned misalign = 0;  // Buf bits: these buffers start 4 bytes past a 16-byte boundary
  uint64_t data_seed = 0;

  std::string name() const {  // the gtest name: letters, digits and underscores
    std::ostringstream o;
    o << "n" << n << "_" << h << "x" << w << "x" << c << "_k" << k << "_" << r << "x" << s << "_st" << p.stride_h << "x"
      << p.stride_w << "_pad" << p.pad_h << "x" << p.pad_w << "_dil" << p.dilation_h << "x" << p.dilation_w;
    if (p.groups != 1) o << "_g" << p.groups;
    if (!bias) o << "_nobias";
    if (tile) o << "_tile" << tile;
    if (splits) o << "_splits" << splits;
    if (bias_chunks) o << "_chunks" << bias_chunks;
    if (misalign == kAllBufs) {
      o << "_misaligned";
    } else {
      for (unsigned b = 0; b < kBufCount; ++b)
        if (misalign & (1u << b)) o << "_misaligned_" << kBufNames[b];
    }
    return o.str();
  }
};

std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << c.name() << (c.label.empty() ? "" : " (" + c.label + ")");
}

Case make_case(std::string label, int n, int h, int w, int c, int k, int r, int s, Conv2dParams p, int groups = 1) {
  p.groups = groups;
  Case cs;
  cs.label = std::move(label);
  cs.n = n;
  cs.h = h;
  cs.w = w;
  cs.c = c;
  cs.k = k;
  cs.r = r;
  cs.s = s;
  cs.p = p;
  return cs;
}

// Hand-picked problems, each for the path its label names.
std::vector<Case> fixed_cases() {
  std::vector<Case> v;
  auto add = [&](Case c) { v.push_back(std::move(c)); };
  add(make_case("RGB input layer, C=3", 2, 8, 8, 3, 8, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1)));
  add(make_case("C and K multiples of 4: the vector path", 2, 8, 8, 8, 8, 3, 3,
                testing::conv_params(1, 1, 1, 1, 1, 1)));
  add(make_case("odd C and K, stride 2, non-square image", 1, 9, 7, 5, 6, 3, 3,
                testing::conv_params(2, 2, 1, 1, 1, 1)));
  add(make_case("stride 3, no padding: 9 backward-data phases", 2, 13, 13, 12, 20, 3, 3,
                testing::conv_params(3, 3, 0, 0, 1, 1)));
  add(make_case("5x5 kernel, dilation 2", 1, 11, 10, 6, 7, 5, 5, testing::conv_params(1, 1, 2, 2, 2, 2)));
  add(make_case("one element everywhere", 1, 1, 1, 1, 1, 1, 1, testing::conv_params(1, 1, 0, 0, 1, 1)));
  {
    Case c = make_case("stride 2 with dilation 2: phases no tap reaches", 2, 9, 9, 4, 4, 3, 3,
                       testing::conv_params(2, 2, 2, 2, 2, 2));
    c.bias = false;
    add(c);
  }
  add(make_case("1x1 kernel, stride 3: pixels no output reads", 2, 7, 8, 5, 6, 1, 1,
                testing::conv_params(3, 3, 0, 0, 1, 1)));
  add(make_case("padding 2 around a 1x1 kernel: outputs of bias only", 2, 5, 7, 3, 9, 1, 1,
                testing::conv_params(1, 1, 2, 2, 1, 1)));
  add(make_case("rectangular kernel and mixed stride, padding, dilation", 2, 10, 9, 7, 5, 2, 4,
                testing::conv_params(2, 1, 1, 0, 2, 1)));
  add(make_case("output of one pixel: the padded input just holds the dilated kernel", 3, 5, 5, 4, 4, 5, 5,
                testing::conv_params(3, 3, 2, 2, 2, 2)));
  {
    Case c = make_case("vector-capable shape, every buffer misaligned: the scalar path", 2, 6, 6, 8, 8, 3, 3,
                       testing::conv_params(1, 1, 1, 1, 1, 1));
    c.misalign = kAllBufs;
    add(c);
  }
  for (const Buf b : {kY, kDx, kDw, kX, kDy}) {
    Case c = make_case("one misaligned buffer sends its passes down the scalar path", 2, 6, 6, 8, 8, 3, 3,
                       testing::conv_params(1, 1, 1, 1, 1, 1));
    c.misalign = 1u << b;
    add(c);
  }
  {
    Case c = make_case("forced split-K into a misaligned workspace", 2, 8, 8, 8, 8, 3, 3,
                       testing::conv_params(1, 1, 1, 1, 1, 1));
    c.splits = 4;
    c.misalign = 1u << kWorkspace;
    add(c);
  }
  {
    Case c = make_case("forced split-K with stride 2x1, pad 1x0, dilation 2x1", 2, 6, 6, 8, 8, 3, 3,
                       testing::conv_params(2, 1, 1, 0, 2, 1));
    c.splits = 3;
    add(c);
  }
  {
    Case c =
        make_case("128 tile, K crosses the tile", 1, 12, 12, 16, 136, 3, 3, testing::conv_params(1, 1, 1, 1, 1, 1));
    c.tile = 128;
    add(c);
  }
  {
    Case c =
        make_case("128 tile, C crosses the tile", 1, 12, 12, 136, 16, 3, 3, testing::conv_params(1, 2, 1, 1, 1, 1));
    c.tile = 128;
    add(c);
  }
  {
    Case c = make_case("128 tile, split-K and dbias chunks together", 1, 12, 12, 20, 130, 2, 3,
                       testing::conv_params(2, 1, 1, 2, 1, 2));
    c.tile = 128;
    c.splits = 5;
    c.bias_chunks = 3;
    add(c);
    c.label = "the same, every buffer misaligned";
    c.misalign = kAllBufs;
    add(c);
  }
  {
    Case c = make_case("64 tile on a problem whose plan picks 128 for backward-filter", 1, 6, 6, 16, 128, 3, 3,
                       testing::conv_params(1, 1, 1, 1, 1, 1));
    c.tile = 64;
    add(c);
  }
  add(make_case("natural plan: 128 tile for backward-filter", 1, 8, 8, 16, 128, 3, 3,
                testing::conv_params(1, 1, 1, 1, 1, 1)));
  add(make_case("natural plan: split-K and 2 dbias chunks (2048 rows)", 8, 16, 16, 4, 8, 3, 3,
                testing::conv_params(1, 1, 1, 1, 1, 1)));
  {
    Case c = make_case("C=3, split-K 7, dbias in 5 chunks, padding 2", 2, 5, 7, 3, 9, 3, 3,
                       testing::conv_params(1, 1, 2, 2, 1, 1));
    c.splits = 7;
    c.bias_chunks = 5;
    add(c);
  }
  add(make_case("fully connected as 1x1 convolution", 128, 1, 1, 512, 10, 1, 1,
                testing::conv_params(1, 1, 0, 0, 1, 1)));
  add(make_case("K=300: several column blocks and bias blocks", 3, 1, 1, 7, 300, 1, 1,
                testing::conv_params(1, 1, 0, 0, 1, 1)));
  {
    Case c = make_case("large 1x1 problem, no bias", 64, 1, 1, 256, 256, 1, 1, testing::conv_params(1, 1, 0, 0, 1, 1));
    c.bias = false;
    add(c);
  }
  for (size_t i = 0; i < v.size(); ++i) v[i].data_seed = hash64(kSeed, i);
  return v;
}

// Grouped and depthwise problems: group widths that are odd, multiples of 4 (the vector path
// inside a group) and 1, groups that cross a GEMM tile, forced tiles, slices and misalignment.
std::vector<Case> grouped_cases() {
  std::vector<Case> v;
  auto add = [&](Case c) { v.push_back(std::move(c)); };
  add(make_case("groups 2 of C/g=3, K/g=5; stride 2, padding 1, dilation 2, batch 1", 1, 9, 8, 6, 10, 3, 3,
                testing::conv_params(2, 2, 1, 1, 2, 2), 2));
  add(make_case("groups 4 of C/g=K/g=4: the vector path inside each group", 2, 6, 6, 16, 16, 3, 3,
                testing::conv_params(1, 1, 1, 1, 1, 1), 4));
  add(make_case("groups 4 of C/g=4, K/g=2: vector loads, scalar stores", 2, 6, 5, 16, 8, 3, 3,
                testing::conv_params(1, 1, 1, 1, 1, 1), 4));
  add(make_case("depthwise C=K=5, stride 2, padding 1", 1, 7, 7, 5, 5, 3, 3, testing::conv_params(2, 2, 1, 1, 1, 1),
                5));
  add(make_case("depthwise K=2C (C=6), padding 2, dilation 2", 2, 8, 8, 6, 12, 3, 3,
                testing::conv_params(1, 1, 2, 2, 2, 2), 6));
  {
    Case c = make_case("depthwise C=K=12: tile 128, split-K 3, dbias in 2 chunks", 2, 6, 6, 12, 12, 3, 3,
                       testing::conv_params(1, 1, 1, 1, 1, 1), 12);
    c.tile = 128;
    c.splits = 3;
    c.bias_chunks = 2;
    add(c);
  }
  {
    Case c = make_case("groups 2 of C/g=K/g=68: two 64-wide tiles per group in every pass", 1, 5, 5, 136, 136, 3, 3,
                       testing::conv_params(2, 2, 1, 1, 1, 1), 2);
    c.tile = 64;
    add(c);
  }
  {
    Case c = make_case("groups 2 of K/g=130: two 128-wide tiles per group, split-K 2", 1, 3, 3, 16, 260, 1, 1,
                       testing::conv_params(1, 1, 0, 0, 1, 1), 2);
    c.tile = 128;
    c.splits = 2;
    add(c);
  }
  {
    Case c = make_case("groups 2 of C/g=K/g=8, every buffer misaligned: the scalar path", 2, 6, 6, 16, 16, 3, 3,
                       testing::conv_params(1, 1, 1, 1, 1, 1), 2);
    c.misalign = kAllBufs;
    add(c);
  }
  {
    Case c = make_case("groups 3 of C/g=4, K/g=3: split-K 4, stride 2x1, padding 1x0, dilation 2x1", 2, 8, 6, 12, 9, 3,
                       2, testing::conv_params(2, 1, 1, 0, 2, 1), 3);
    c.splits = 4;
    add(c);
  }
  for (size_t i = 0; i < v.size(); ++i) v[i].data_seed = hash64(kSeed + 2, i);
  return v;
}

int pick(Rng& rng, int low, int high) {  // uniform in [low, high]
  return low + static_cast<int>(rng.below(static_cast<uint64_t>(high - low + 1)));
}

// Random problems: channel counts of 3, multiples of 4 and anything up to 40; kernels 1-5,
// stride 1-3, padding 0-2, dilation 1-2 per axis; forced plans and misaligned buffers mixed in.
// With `grouped`, 2-6 groups (or depthwise) of widths 1, multiples of 4 or anything up to 12.
// Sizes are capped so the whole file stays fast.
std::vector<Case> random_cases(bool grouped) {
  const int count = grouped ? 16 : 64;
  constexpr int64_t kMaxFlops = 3'000'000;
  Rng rng(grouped ? kSeed + 3 : kSeed);
  std::vector<Case> v;
  auto channels = [&] {
    const int kind = pick(rng, 0, 3);
    return kind == 0 ? 3 : kind == 1 ? 4 * pick(rng, 1, 10) : pick(rng, 1, 40);
  };
  auto group_width = [&] {
    const int kind = pick(rng, 0, 2);
    return kind == 0 ? 1 : kind == 1 ? 4 * pick(rng, 1, 2) : pick(rng, 1, 12);
  };
  while (static_cast<int>(v.size()) < count) {
    Case c;
    c.n = pick(rng, 1, 3);
    c.h = pick(rng, 1, 14);
    c.w = pick(rng, 1, 14);
    int groups = 1;
    if (grouped) {
      groups = pick(rng, 2, 6);
      c.c = groups * group_width();
      c.k = groups * group_width();
    } else {
      c.c = channels();
      c.k = channels();
    }
    c.r = pick(rng, 1, 5);
    c.s = pick(rng, 1, 5);
    c.p = testing::conv_params(pick(rng, 1, 3), pick(rng, 1, 3), pick(rng, 0, 2), pick(rng, 0, 2), pick(rng, 1, 2),
                               pick(rng, 1, 2));
    c.p.groups = groups;
    c.bias = pick(rng, 0, 3) != 0;
    const int tile = pick(rng, 0, 3);
    c.tile = tile == 0 ? 128 : tile == 1 ? 64 : 0;
    c.splits = pick(rng, 0, 2) == 0 ? pick(rng, 2, 6) : 0;
    c.bias_chunks = pick(rng, 0, 3) == 0 ? pick(rng, 2, 5) : 0;
    const int mis = pick(rng, 0, 9);
    c.misalign = mis == 0 ? kAllBufs : mis == 1 ? 1u << pick(rng, 0, kBufCount - 1) : 0;
    // The padded input must hold the dilated kernel (conv_output_size alone would round some
    // too-small inputs up to one output when the stride is above 1).
    if (c.h + 2 * c.p.pad_h < c.p.dilation_h * (c.r - 1) + 1 || c.w + 2 * c.p.pad_w < c.p.dilation_w * (c.s - 1) + 1)
      continue;
    const int64_t p = conv_output_size(c.h, c.r, c.p.stride_h, c.p.pad_h, c.p.dilation_h);
    const int64_t q = conv_output_size(c.w, c.s, c.p.stride_w, c.p.pad_w, c.p.dilation_w);
    if (2 * c.n * p * q * c.k * c.r * c.s * (c.c / c.p.groups) > kMaxFlops) continue;
    c.label = std::string(grouped ? "random grouped #" : "random #") + std::to_string(v.size());
    c.data_seed = hash64(grouped ? kSeed + 4 : kSeed + 1, v.size());
    v.push_back(c);
  }
  return v;
}

// Device memory stand-in: `size` floats between NaN guard zones, 64-byte aligned or 4 bytes past.
class GuardedBuffer {
 public:
  GuardedBuffer(size_t size, bool misaligned) : size_(size), storage_(size + 2 * kGuardFloats + 32) {
    const auto base = reinterpret_cast<uintptr_t>(storage_.data());
    const size_t to_64 = (64 - base % 64) % 64 / sizeof(float);
    offset_ = to_64 + kGuardFloats + (misaligned ? 1 : 0);
    fill_all(std::bit_cast<float>(kGuardBits));
  }
  float* data() { return storage_.data() + offset_; }
  const float* data() const { return storage_.data() + offset_; }
  size_t size() const { return size_; }
  void fill(float value) { std::fill(data(), data() + size_, value); }
  void copy_from(const float* src) { std::memcpy(data(), src, size_ * sizeof(float)); }
  std::vector<float> values() const { return {data(), data() + size_}; }
  bool same_bits(const float* other) const { return std::memcmp(data(), other, size_ * sizeof(float)) == 0; }
  // Whether everything outside [data, data + size) still holds the guard pattern.
  bool guards_intact() const {
    for (size_t i = 0; i < storage_.size(); ++i)
      if ((i < offset_ || i >= offset_ + size_) && std::bit_cast<uint32_t>(storage_[i]) != kGuardBits) return false;
    return true;
  }

 private:
  void fill_all(float value) { std::fill(storage_.begin(), storage_.end(), value); }
  size_t size_;
  size_t offset_ = 0;
  std::vector<float> storage_;
};

// Restores the emulator's default order when a test ends, passing or not.
struct ScopedOrder {
  explicit ScopedOrder(emu::Order o) { emu::set_order(o); }
  ~ScopedOrder() { emu::set_order(emu::Order::forward); }
};

bool aligned16(const float* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The v2 plans of a case: conv_gemm_plan()'s, with the case's overrides applied consistently
// (slice and chunk sizes recomputed so every slice and chunk is non-empty).
struct V2Plans {
  ConvGemmPlan forward, backward_data, backward_filter;
  bool forced = false;
};

V2Plans v2_plans(const Case& cs, const ConvShape& shape) {
  V2Plans pl{conv_gemm_plan(shape, ConvPass::forward), conv_gemm_plan(shape, ConvPass::backward_data),
             conv_gemm_plan(shape, ConvPass::backward_filter), false};
  if (cs.tile != 0) {
    for (ConvGemmPlan* plan : {&pl.forward, &pl.backward_data, &pl.backward_filter}) {
      plan->block_m = plan->block_n = cs.tile;
      plan->block_k = cs.tile == 128 ? 8 : 16;
    }
    pl.forced = true;
  }
  ConvGemmPlan& bf = pl.backward_filter;
  if (cs.tile != 0 || cs.splits != 0) {
    const int64_t k_tiles = ceil_div(bf.gemm_k, bf.block_k);
    const int64_t want = cs.splits != 0 ? cs.splits : bf.splits;
    bf.k_tiles_per_split = ceil_div(k_tiles, want);
    bf.splits = static_cast<int>(ceil_div(k_tiles, bf.k_tiles_per_split));
    pl.forced = true;
  }
  if (cs.bias_chunks != 0) {
    bf.bias_rows_per_chunk = ceil_div(bf.gemm_k, cs.bias_chunks);
    bf.bias_chunks = static_cast<int>(ceil_div(bf.gemm_k, bf.bias_rows_per_chunk));
    pl.forced = true;
  }
  return pl;
}

// One problem's data, references and device-memory stand-ins.
class ConvProblem {
 public:
  explicit ConvProblem(const Case& cs)
      : cs_(cs),
        shape_(ConvShape::make(cs.n, cs.h, cs.w, cs.c, cs.k, cs.r, cs.s, cs.p)),
        plans_(v2_plans(cs, shape_)),
        rng_(cs.data_seed),
        x_(testing::random_tensor({cs.n, cs.h, cs.w, cs.c}, rng_)),
        w_(testing::random_tensor({cs.k, cs.r, cs.s, cs.c / cs.p.groups}, rng_)),
        bias_(testing::random_tensor({cs.k}, rng_)),
        dy_(testing::random_tensor({cs.n, shape_.p, shape_.q, cs.k}, rng_)),
        y_ref_(testing::naive::conv2d_forward(x_, w_, cs.bias ? &bias_ : nullptr, cs.p)),
        dx_ref_(testing::naive::conv2d_backward_data(dy_, w_, x_.shape(), cs.p)),
        dw_ref_(testing::naive::conv2d_backward_filter(x_, dy_, w_.shape(), cs.p)),
        db_ref_(testing::naive::sum_over_last_dim(dy_)) {
    const int64_t sizes[kBufCount] = {
        x_.numel(),  w_.numel(),  cs.k,
        dy_.numel(), dy_.numel(), x_.numel(),
        w_.numel(),  cs.k,        detail::conv_filter_workspace_floats(plans_.backward_filter, shape_)};
    for (unsigned b = 0; b < kBufCount; ++b)
      bufs_.emplace_back(static_cast<size_t>(sizes[b]), (cs.misalign & (1u << b)) != 0);
    for (const auto& [b, t] : inputs()) buf(b).copy_from(t->f32());
  }

  // Runs the three passes of `v` on NaN-poisoned outputs and checks them against the references.
  void run_and_check(ConvVersion v) {
    const double tol = v == ConvVersion::v0_direct ? kTolV0 : kTolV2;
    SCOPED_TRACE(conv_version_name(v));
    run(v, std::numeric_limits<float>::quiet_NaN());
    expect_close("forward y", buf(kY), y_ref_, tol);
    expect_close("backward-data dx", buf(kDx), dx_ref_, tol);
    expect_close("backward-filter dw", buf(kDw), dw_ref_, tol);
    if (cs_.bias) expect_close("backward-filter dbias", buf(kDbias), db_ref_, tol);
    expect_buffers_intact();
  }

  // v2 again, blocks and threads in reverse order, outputs poisoned with another value: the
  // same bits as the run before.
  void rerun_v2_reversed_and_compare() {
    const Buf outputs[] = {kY, kDx, kDw, kDbias};
    std::vector<std::vector<float>> first;
    for (const Buf b : outputs) first.push_back(buf(b).values());
    {
      ScopedOrder order(emu::Order::reverse);
      run(ConvVersion::v2_implicit_gemm, kSecondPoison);
    }
    for (size_t i = 0; i < std::size(outputs); ++i) {
      if (outputs[i] == kDbias && !cs_.bias) continue;
      EXPECT_TRUE(buf(outputs[i]).same_bits(first[i].data())) << kBufNames[outputs[i]] << " differs between runs";
    }
    expect_buffers_intact();
  }

 private:
  GuardedBuffer& buf(Buf b) { return bufs_[b]; }
  std::vector<std::pair<Buf, const Tensor*>> inputs() const {
    return {{kX, &x_}, {kW, &w_}, {kBias, &bias_}, {kDy, &dy_}};
  }

  void run(ConvVersion v, float poison) {
    for (const Buf b : {kY, kDx, kDw, kDbias, kWorkspace}) buf(b).fill(poison);
    const float* x = buf(kX).data();
    const float* w = buf(kW).data();
    const float* dy = buf(kDy).data();
    float* y = buf(kY).data();
    float* dx = buf(kDx).data();
    float* dw = buf(kDw).data();
    const float* bias = cs_.bias ? buf(kBias).data() : nullptr;
    float* dbias = cs_.bias ? buf(kDbias).data() : nullptr;
    float* ws = buf(kWorkspace).size() > 0 ? buf(kWorkspace).data() : nullptr;
    const bool v2 = v == ConvVersion::v2_implicit_gemm;

    emu::reset_stats();
    if (v2 && plans_.forced)
      detail::gemm_forward(x, w, bias, y, shape_, plans_.forward, nullptr);
    else
      conv2d_forward(x, w, bias, y, shape_, nullptr, v);
    expect_launches("forward", 1, v2 && plans_.forward.vectorized && aligned16(x) && aligned16(w) && aligned16(y));

    emu::reset_stats();
    if (v2 && plans_.forced)
      detail::gemm_backward_data(dy, w, dx, shape_, plans_.backward_data, nullptr);
    else
      conv2d_backward_data(dy, w, dx, shape_, nullptr, v);
    expect_launches("backward-data", 1,
                    v2 && plans_.backward_data.vectorized && aligned16(dy) && aligned16(w) && aligned16(dx));

    emu::reset_stats();
    if (!v2) {
      conv2d_backward_filter(x, dy, dw, dbias, shape_, nullptr, nullptr, v);
      expect_launches("backward-filter", cs_.bias ? 2 : 1, false);
      return;
    }
    const ConvGemmPlan& bf = plans_.backward_filter;
    if (plans_.forced) {
      detail::gemm_backward_filter(x, dy, dw, dbias, shape_, bf, ws, nullptr);
    } else {
      ASSERT_EQ(conv2d_backward_filter_workspace(shape_), buf(kWorkspace).size() * sizeof(float))
          << "the workspace size the launcher asks for is not the plan's";
      conv2d_backward_filter(x, dy, dw, dbias, shape_, ws, nullptr, v);
    }
    // The GEMM, the slice sum when split, the dbias chunk sums, and their total when chunked.
    const int64_t launches = 1 + (bf.splits > 1) + (cs_.bias ? 1 + (bf.bias_chunks > 1) : 0);
    const float* gemm_out = bf.splits > 1 ? ws : dw;
    expect_launches("backward-filter", launches, bf.vectorized && aligned16(x) && aligned16(dy) && aligned16(gemm_out));
  }

  // The launcher ran the expected number of kernels, on the 128-bit path exactly when the plan
  // allows it and the pointers are aligned (conv_kernels.h).
  static void expect_launches(const char* pass, int64_t launches, bool vector_path) {
    const emu::Stats st = emu::stats();
    EXPECT_EQ(st.launches, launches) << pass << ": kernel launches";
    if (vector_path)
      EXPECT_GT(st.global_vector_loads, 0) << pass << ": expected the 128-bit load path";
    else
      EXPECT_EQ(st.global_vector_loads, 0) << pass << ": expected the scalar load path";
  }

  static void expect_close(const char* what, const GuardedBuffer& b, const std::vector<double>& ref, double tol) {
    const Tensor t = Tensor::from_vector({static_cast<int64_t>(b.size())}, b.values());
    EXPECT_TRUE(testing::close_l2(t, ref, tol)) << what;
  }

  void expect_buffers_intact() {
    for (unsigned b = 0; b < kBufCount; ++b)
      EXPECT_TRUE(bufs_[b].guards_intact()) << "a kernel wrote outside " << kBufNames[b];
    for (const auto& [b, t] : inputs()) EXPECT_TRUE(buf(b).same_bits(t->f32())) << kBufNames[b] << " was modified";
  }

  Case cs_;
  ConvShape shape_;
  V2Plans plans_;
  Rng rng_;
  Tensor x_, w_, bias_, dy_;
  std::vector<double> y_ref_, dx_ref_, dw_ref_, db_ref_;
  std::vector<GuardedBuffer> bufs_;  // indexed by Buf
};

class ConvEmulation : public ::testing::TestWithParam<Case> {};

TEST_P(ConvEmulation, BothVersionsMatchTheFloat64Reference) {
  SCOPED_TRACE(::testing::PrintToString(GetParam()));
  ConvProblem problem(GetParam());
  problem.run_and_check(ConvVersion::v0_direct);
  problem.run_and_check(ConvVersion::v2_implicit_gemm);
  problem.rerun_v2_reversed_and_compare();
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return (info.index < 10 ? "0" : "") + std::to_string(info.index) + "_" + info.param.name();
}

INSTANTIATE_TEST_SUITE_P(Fixed, ConvEmulation, ::testing::ValuesIn(fixed_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Random, ConvEmulation, ::testing::ValuesIn(random_cases(false)), case_name);
INSTANTIATE_TEST_SUITE_P(Grouped, ConvEmulation, ::testing::ValuesIn(grouped_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(RandomGrouped, ConvEmulation, ::testing::ValuesIn(random_cases(true)), case_name);

// --- the emulator itself: the properties the tests above rely on ---

constexpr unsigned kThreads = 256;
float g_shared[kThreads];  // a kernel's __shared__ array
float g_out[kThreads];

// Each thread publishes its index, then reads its neighbour's.
void neighbour_kernel(bool with_barrier) {
  const unsigned t = threadIdx.x;
  g_shared[t] = static_cast<float>(t + 1);
  if (with_barrier) emu::syncthreads();
  g_out[t] = g_shared[(t + 1) % kThreads];
}

TEST(Emulator, BarrierMakesOtherThreadsWritesVisible) {
  for (const emu::Order order : {emu::Order::forward, emu::Order::reverse}) {
    ScopedOrder scoped(order);
    std::fill(std::begin(g_shared), std::end(g_shared), 0.0f);
    emu::launch(neighbour_kernel, dim3(1), dim3(kThreads), 0, nullptr, true);
    for (unsigned t = 0; t < kThreads; ++t) ASSERT_EQ(g_out[t], static_cast<float>((t + 1) % kThreads + 1));
  }
}

TEST(Emulator, MissingBarrierGivesWrongOrOrderDependentResults) {
  std::fill(std::begin(g_shared), std::end(g_shared), 0.0f);
  emu::launch(neighbour_kernel, dim3(1), dim3(kThreads), 0, nullptr, false);
  // Thread t runs to completion before thread t + 1 writes: it reads the stale value.
  EXPECT_EQ(g_out[0], 0.0f);
  std::fill(std::begin(g_shared), std::end(g_shared), 0.0f);
  {
    ScopedOrder scoped(emu::Order::reverse);
    emu::launch(neighbour_kernel, dim3(1), dim3(kThreads), 0, nullptr, false);
  }
  EXPECT_EQ(g_out[0], 2.0f);  // in reverse, thread 1 has already written
}

void divergent_barrier_kernel() {
  if (threadIdx.x < 100) return;
  emu::syncthreads();
}

TEST(Emulator, BarrierInDivergentCodeIsAnError) {
  const std::string what =
      testing::error_of<emu::Error>([] { emu::launch(divergent_barrier_kernel, dim3(2), dim3(kThreads), 0, nullptr); });
  EXPECT_NE(what.find("156 threads wait at __syncthreads() while 100 have returned"), std::string::npos) << what;
  // The emulator recovers: the next launch runs normally.
  emu::launch(neighbour_kernel, dim3(1), dim3(kThreads), 0, nullptr, true);
  EXPECT_EQ(g_out[0], 2.0f);
}

void misaligned_load_kernel(const float* p) {
  emu::check_vector_access(p + threadIdx.x % 2);
}

TEST(Emulator, MisalignedVectorAccessIsAnErrorRaisedByTheLaunch) {
  alignas(16) float data[8] = {};
  const std::string what =
      testing::error_of<emu::Error>([&] { emu::launch(misaligned_load_kernel, dim3(1), dim3(32), 0, nullptr, data); });
  EXPECT_NE(what.find("not 16-byte aligned"), std::string::npos) << what;
}

void noop_kernel() {}

TEST(Emulator, LaunchesTheHardwareRejectsAreErrors) {
  EXPECT_THROW(emu::launch(noop_kernel, dim3(1), dim3(1025), 0, nullptr), emu::Error);
  EXPECT_THROW(emu::launch(noop_kernel, dim3(1), dim3(32, 32, 2), 0, nullptr), emu::Error);
  EXPECT_THROW(emu::launch(noop_kernel, dim3(1), dim3(1, 1, 65), 0, nullptr), emu::Error);
  EXPECT_THROW(emu::launch(noop_kernel, dim3(0), dim3(32), 0, nullptr), emu::Error);
  EXPECT_THROW(emu::launch(noop_kernel, dim3(1, 65536), dim3(32), 0, nullptr), emu::Error);
  // Over 48 KiB of dynamic shared memory without cudaFuncSetAttribute (tests/emu/ptx_emulation_test.cpp
  // covers the rest).
  EXPECT_THROW(emu::launch(noop_kernel, dim3(1), dim3(32), 64 * 1024, nullptr), emu::Error);
  emu::reset_stats();
  emu::launch(noop_kernel, dim3(3, 2, 1), dim3(4, 8), 0, nullptr);
  EXPECT_EQ(emu::stats().launches, 1);
  EXPECT_EQ(emu::stats().blocks, 6);
}

}  // namespace
}  // namespace convnet::cuda
