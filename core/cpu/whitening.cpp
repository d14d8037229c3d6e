#include "core/cpu/whitening.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "core/base/error.h"
#include "core/cpu/parallel.h"

// LAPACK from the OpenBLAS we link (no lapacke header is installed). The trailing arguments are
// the hidden Fortran lengths of the two character arguments.
extern "C" void dsyev_(const char* jobz, const char* uplo, const blasint* n, double* a, const blasint* lda, double* w,
                       double* work, const blasint* lwork, blasint* info, size_t jobz_len, size_t uplo_len);

namespace convnet::cpu {

namespace {

// Fixed partition of the patches: the covariance is a sum of kPartitions partial sums added in
// order, each over the same patches whatever the thread count.
constexpr int64_t kPartitions = 16;
constexpr int64_t kBlockPatches = 1024;  // rows of one dsyrk call

struct PatchGeometry {
  int64_t n, h, w, c, kernel, dilation, out_h, out_w;
  int64_t dim() const { return kernel * kernel * c; }
  int64_t count() const { return n * out_h * out_w; }
};

PatchGeometry geometry(const Tensor& images, int kernel, int dilation) {
  CONVNET_CHECK(images.is_cpu() && images.dtype() == DType::f32 && images.rank() == 4,
                "whitening: expects host f32 images [N, H, W, C], got {}", shape_str(images.shape()));
  CONVNET_CHECK(kernel >= 1 && dilation >= 1, "whitening: kernel {} dilation {}", kernel, dilation);
  PatchGeometry g{images.dim(0), images.dim(1), images.dim(2), images.dim(3), kernel, dilation, 0, 0};
  const int64_t span = static_cast<int64_t>(dilation) * (kernel - 1) + 1;
  g.out_h = g.h - span + 1;
  g.out_w = g.w - span + 1;
  CONVNET_CHECK(g.n > 0 && g.c > 0 && g.out_h > 0 && g.out_w > 0, "whitening: {}x{} kernel (dilation {}) on images {}",
                kernel, kernel, dilation, shape_str(images.shape()));
  return g;
}

// Writes patch p as row `row` of `a` ([rows, D], double).
void gather_patch(const PatchGeometry& g, const float* images, int64_t p, double* row) {
  const int64_t per_image = g.out_h * g.out_w;
  const int64_t img = p / per_image, y = (p % per_image) / g.out_w, x = p % g.out_w;
  for (int64_t r = 0; r < g.kernel; ++r)
    for (int64_t s = 0; s < g.kernel; ++s) {
      const float* src = images + ((img * g.h + y + r * g.dilation) * g.w + x + s * g.dilation) * g.c;
      for (int64_t ch = 0; ch < g.c; ++ch) *row++ = src[ch];
    }
}

int blas_int(int64_t v) {
  CONVNET_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "whitening: {} does not fit a BLAS int", v);
  return static_cast<int>(v);
}

}  // namespace

std::vector<double> patch_covariance(const Tensor& images, int kernel, int dilation) {
  const PatchGeometry g = geometry(images, kernel, dilation);
  const int64_t d = g.dim(), total = g.count();
  const size_t dd = static_cast<size_t>(d * d);
  std::vector<double> partial(static_cast<size_t>(kPartitions) * dd, 0.0);
  const float* data = images.f32();
  parallel_for(0, kPartitions, 1, [&](int64_t part0, int64_t part1) {
    std::vector<double> block(static_cast<size_t>(kBlockPatches * d));
    for (int64_t part = part0; part < part1; ++part) {
      const int64_t begin = total * part / kPartitions, end = total * (part + 1) / kPartitions;
      double* acc = partial.data() + static_cast<size_t>(part) * dd;
      for (int64_t b0 = begin; b0 < end; b0 += kBlockPatches) {
        const int64_t rows = std::min(kBlockPatches, end - b0);
        for (int64_t i = 0; i < rows; ++i) gather_patch(g, data, b0 + i, block.data() + i * d);
        // acc (upper triangle) += block^T block
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, blas_int(d), blas_int(rows), 1.0, block.data(), blas_int(d),
                    1.0, acc, blas_int(d));
      }
    }
  });
  std::vector<double> cov(dd, 0.0);
  for (int64_t part = 0; part < kPartitions; ++part)
    for (size_t i = 0; i < dd; ++i) cov[i] += partial[static_cast<size_t>(part) * dd + i];
  const double inv = 1.0 / static_cast<double>(total);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = i; j < d; ++j) {
      const double v = cov[static_cast<size_t>(i * d + j)] * inv;
      cov[static_cast<size_t>(i * d + j)] = v;
      cov[static_cast<size_t>(j * d + i)] = v;
    }
  return cov;
}

void symmetric_eigen(const std::vector<double>& matrix, int64_t n, std::vector<double>& eigenvalues,
                     std::vector<double>& eigenvectors) {
  CONVNET_CHECK(n > 0 && matrix.size() == static_cast<size_t>(n * n), "symmetric_eigen: {} values for n = {}",
                matrix.size(), n);
  // Symmetric, so row-major and column-major storage are the same matrix; dsyev leaves the
  // eigenvectors in the columns of the column-major array, i.e. eigenvector j at [j * n, j * n + n).
  eigenvectors = matrix;
  eigenvalues.assign(static_cast<size_t>(n), 0.0);
  const blasint bn = static_cast<blasint>(blas_int(n));
  blasint info = 0, lwork = -1;
  double query = 0;
  dsyev_("V", "U", &bn, eigenvectors.data(), &bn, eigenvalues.data(), &query, &lwork, &info, 1, 1);
  CONVNET_CHECK(info == 0, "dsyev workspace query failed: info {}", static_cast<int64_t>(info));
  lwork = static_cast<blasint>(std::max<double>(query, 3.0 * static_cast<double>(n)));
  std::vector<double> work(static_cast<size_t>(lwork));
  dsyev_("V", "U", &bn, eigenvectors.data(), &bn, eigenvalues.data(), work.data(), &lwork, &info, 1, 1);
  CONVNET_CHECK(info == 0, "dsyev failed: info {} (no convergence or a NaN in the covariance)",
                static_cast<int64_t>(info));
}

WhiteningFilters whitening_filters(const Tensor& images, int kernel, int dilation, double eps) {
  CONVNET_CHECK(eps > 0, "whitening: eps must be positive, got {}", eps);
  const PatchGeometry g = geometry(images, kernel, dilation);
  const int64_t d = g.dim();
  std::vector<double> values, vectors;
  symmetric_eigen(patch_covariance(images, kernel, dilation), d, values, vectors);

  WhiteningFilters out;
  out.patches = g.count();
  out.filters = Tensor({2 * d, g.kernel, g.kernel, g.c});
  float* f = out.filters.f32();
  for (int64_t j = 0; j < d; ++j) {
    const int64_t src = d - 1 - j;  // dsyev sorts ascending
    const double lambda = values[static_cast<size_t>(src)];
    const double* e = vectors.data() + src * d;
    int64_t big = 0;
    for (int64_t i = 1; i < d; ++i)
      if (std::abs(e[i]) > std::abs(e[big])) big = i;
    const double scale = (e[big] < 0 ? -1.0 : 1.0) / std::sqrt(std::max(lambda, 0.0) + eps);
    for (int64_t i = 0; i < d; ++i) {
      f[j * d + i] = static_cast<float>(scale * e[i]);
      f[(d + j) * d + i] = static_cast<float>(-scale * e[i]);
    }
    out.eigenvalues.push_back(lambda);
  }
  return out;
}

}  // namespace convnet::cpu
