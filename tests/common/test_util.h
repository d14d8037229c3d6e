// Shared test helpers: random inputs (never zeros), float64 comparisons, relative L2 error.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/backend.h"
#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"

namespace convnet::testing {

// Convolution parameters in one call: conv_params(stride_h, stride_w, pad_h, pad_w, dil_h, dil_w).
inline Conv2dParams conv_params(int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w) {
  return {stride_h, stride_w, pad_h, pad_w, dil_h, dil_w};
}

// Uniform integer in [low, high]: the draws of the randomized problem generators.
inline int pick(Rng& rng, int low, int high) {
  return low + static_cast<int>(rng.below(static_cast<uint64_t>(high - low + 1)));
}

// Host f32 tensor with values uniform in [low, high).
Tensor random_tensor(const Shape& shape, Rng& rng, float low = -1.0f, float high = 1.0f);
// Host i32 tensor with values uniform in [0, bound).
Tensor random_labels(int64_t n, int bound, Rng& rng);
std::vector<double> to_double(const Tensor& t);
// Host f32 tensor of NaNs: the output of an op that must overwrite every element.
Tensor poisoned(const Shape& shape);
// The host f32 tensor t rounded to bf16 (to nearest even), stored as bf16.
Tensor bf16_tensor(const Tensor& t);

// ||a - b||_2 / max(||b||_2, tiny); NaN anywhere gives +inf so NaN never passes.
double relative_l2_error(const std::vector<double>& a, const std::vector<double>& b);
double relative_l2_error(const Tensor& a, const std::vector<double>& b);
double relative_l2_error(const Tensor& a, const Tensor& b);

// gtest assertion: relative L2 error below `tolerance`, printing the first mismatching elements.
::testing::AssertionResult close_l2(const Tensor& actual, const std::vector<double>& expected, double tolerance);
::testing::AssertionResult close_l2(const Tensor& actual, const Tensor& expected, double tolerance);
// gtest assertion: host tensors with the same dtype, element count and bytes (deterministic
// results, aliasing variants of one op); reports the first differing elements.
::testing::AssertionResult bitwise_equal(const Tensor& actual, const Tensor& expected);

// The what() of the E that fn() throws, or "" when it returns normally (other exceptions pass).
template <class E = Error, class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

// The whole file; "" when it cannot be opened.
std::string read_file(const std::string& path);
// read_file as unsigned bytes.
std::vector<uint8_t> read_file_bytes(const std::string& path);
// Creates or truncates `path` and writes `bytes`; a gtest failure when the write fails.
void write_file(const std::string& path, std::string_view bytes);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

// A fresh temporary directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace convnet::testing
