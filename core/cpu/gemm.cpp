#include "core/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <limits>

#include "core/base/error.h"
#include "core/cpu/parallel.h"

namespace convnet::cpu {

namespace {

constexpr int64_t kMinBlock = 64;           // rows or columns per block, at least
constexpr int64_t kMaxBlocks = 32;          // enough to balance a few threads
constexpr int64_t kSplitMinWork = 1 << 18;  // m * n * k below this runs as one call

int blas_int(int64_t v, const char* what) {
  CONVNET_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "sgemm: {} = {} does not fit a 32-bit BLAS int", what,
                v);
  return static_cast<int>(v);
}

void blas_call(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, blas_int(m, "m"),
              blas_int(n, "n"), blas_int(k, "k"), alpha, a, blas_int(lda, "lda"), b, blas_int(ldb, "ldb"), beta, c,
              blas_int(ldc, "ldc"));
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS may skip the beta scaling for an empty inner dimension
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  const bool split_m = m >= n;
  const int64_t extent = split_m ? m : n;
  const int64_t blocks = m * n * k < kSplitMinWork ? 1 : std::clamp<int64_t>(extent / kMinBlock, 1, kMaxBlocks);
  if (blocks == 1) {
    blas_call(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int64_t block = ((extent + blocks - 1) / blocks + 15) / 16 * 16;
  const int64_t count = (extent + block - 1) / block;
  parallel_for(0, count, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t lo = i * block, len = std::min(block, extent - lo);
      if (split_m) {  // rows [lo, lo + len) of C and op(A)
        const float* a_sub = trans_a ? a + lo : a + lo * lda;
        blas_call(trans_a, trans_b, len, n, k, alpha, a_sub, lda, b, ldb, beta, c + lo * ldc, ldc);
      } else {  // columns [lo, lo + len) of C and op(B)
        const float* b_sub = trans_b ? b + lo * ldb : b + lo;
        blas_call(trans_a, trans_b, m, len, k, alpha, a, lda, b_sub, ldb, beta, c + lo, ldc);
      }
    }
  });
}

}  // namespace convnet::cpu
