// Whitening filters for a convolution (airbench's data-dependent init of its first conv).
//
// Every k x k patch (stride 1, no padding, taps `dilation` apart) of every image is a vector of
// k*k*C values in the filter's KRSC order ((r * k + s) * C + c). With the uncentred patch
// covariance S = (1/P) sum_p v_p v_p^T (accumulated in double) and its eigenpairs (l_j, e_j)
// sorted by l_j descending, the filters are
//   filter j       = e_j / sqrt(max(l_j, 0) + eps)   for j < D = k*k*C,
//   filter D + j   = -filter j,
// so convolving the images with the first D filters gives outputs whose uncentred covariance
// is diag(l_j / (l_j + eps)). Each eigenvector's sign is fixed so that its largest-magnitude
// component (first one on ties) is positive, making the result independent of the LAPACK build.
// The covariance is summed over a fixed partition of the patches, so the result does not depend
// on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "core/base/tensor.h"

namespace convnet::cpu {

struct WhiteningFilters {
  Tensor filters;                   // host f32 [2D, k, k, C]
  std::vector<double> eigenvalues;  // [D], descending (as computed, before clamping at 0)
  int64_t patches = 0;              // P
};

// images: host f32 [N, H, W, C] with H, W >= dilation * (kernel - 1) + 1; kernel >= 1, eps > 0.
// Violations are CONVNET_CHECK failures (the conv layer validates its configuration first).
WhiteningFilters whitening_filters(const Tensor& images, int kernel, int dilation, double eps);

// The uncentred patch covariance S above, row-major [D, D] (exposed for tests).
std::vector<double> patch_covariance(const Tensor& images, int kernel, int dilation);

// Eigen-decomposition of a symmetric row-major [n, n] matrix (LAPACK dsyev): eigenvalues
// ascending, eigenvectors[j * n + i] = component i of the eigenvector of eigenvalues[j].
void symmetric_eigen(const std::vector<double>& matrix, int64_t n, std::vector<double>& eigenvalues,
                     std::vector<double>& eigenvectors);

}  // namespace convnet::cpu
