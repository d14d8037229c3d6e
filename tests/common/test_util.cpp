#include "tests/common/test_util.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

namespace convnet::testing {

Tensor random_tensor(const Shape& shape, Rng& rng, float low, float high) {
  Tensor t(shape);
  for (float& x : t.span()) x = rng.uniform(low, high);
  return t;
}

Tensor random_labels(int64_t n, int bound, Rng& rng) {
  Tensor t({n}, DType::i32);
  int32_t* p = t.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(bound)));
  return t;
}

std::vector<double> to_double(const Tensor& t) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(t.numel()));
  for (float x : t.span()) out.push_back(x);
  return out;
}

Tensor poisoned(const Shape& shape) {
  return Tensor::full(shape, std::numeric_limits<float>::quiet_NaN());
}

Tensor bf16_tensor(const Tensor& t) {
  Tensor out(t.shape(), DType::bf16);
  auto* bits = out.data<uint16_t>();
  for (int64_t i = 0; i < t.numel(); ++i) bits[i] = to_bf16_bits(t.f32()[i]);
  return out;
}

double relative_l2_error(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    ref += b[i] * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-30);
}

double relative_l2_error(const Tensor& a, const std::vector<double>& b) {
  return relative_l2_error(to_double(a), b);
}
double relative_l2_error(const Tensor& a, const Tensor& b) {
  return relative_l2_error(to_double(a), to_double(b));
}

::testing::AssertionResult close_l2(const Tensor& actual, const std::vector<double>& expected, double tolerance) {
  const std::vector<double> a = to_double(actual);
  const double err = relative_l2_error(a, expected);
  if (err <= tolerance) return ::testing::AssertionSuccess();
  std::ostringstream msg;
  msg << "relative L2 error " << err << " > " << tolerance << " (sizes " << a.size() << " vs " << expected.size()
      << ")";
  int shown = 0;
  for (size_t i = 0; i < std::min(a.size(), expected.size()) && shown < 5; ++i) {
    const double d = std::abs(a[i] - expected[i]);
    if (!(d <= tolerance * std::max(1.0, std::abs(expected[i])))) {
      msg << "\n  [" << i << "] got " << a[i] << " expected " << expected[i];
      ++shown;
    }
  }
  return ::testing::AssertionFailure() << msg.str();
}

::testing::AssertionResult close_l2(const Tensor& actual, const Tensor& expected, double tolerance) {
  return close_l2(actual, to_double(expected), tolerance);
}

::testing::AssertionResult bitwise_equal(const Tensor& actual, const Tensor& expected) {
  if (actual.dtype() != expected.dtype() || actual.numel() != expected.numel())
    return ::testing::AssertionFailure() << "got " << dtype_name(actual.dtype()) << " " << shape_str(actual.shape())
                                         << ", expected " << dtype_name(expected.dtype()) << " "
                                         << shape_str(expected.shape());
  const size_t size = dtype_size(actual.dtype());
  const auto* a = static_cast<const unsigned char*>(actual.raw());
  const auto* b = static_cast<const unsigned char*>(expected.raw());
  int64_t mismatches = 0;
  std::ostringstream detail;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const size_t offset = static_cast<size_t>(i) * size;
    if (std::memcmp(a + offset, b + offset, size) == 0) continue;
    if (++mismatches <= 5) {
      detail << "\n  [" << i << "] got ";
      if (actual.dtype() == DType::f32)
        detail << actual.f32()[i] << " expected " << expected.f32()[i];
      else if (actual.dtype() == DType::i32)
        detail << actual.data<int32_t>()[i] << " expected " << expected.data<int32_t>()[i];
      else if (actual.dtype() == DType::u8)
        detail << int{actual.data<uint8_t>()[i]} << " expected " << int{expected.data<uint8_t>()[i]};
      else
        detail << "different bytes";
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << mismatches << " of " << actual.numel() << " elements differ" << detail.str();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  const std::string bytes = read_file(path);
  return {bytes.begin(), bytes.end()};
}

void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file(path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

TempDir::TempDir() {
  static int counter = 0;
  namespace fs = std::filesystem;
  for (;;) {
    fs::path p =
        fs::temp_directory_path() / ("convnet_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    if (fs::create_directory(p)) {
      path_ = p.string();
      return;
    }
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace convnet::testing
