// Row-major single-precision GEMM: C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C.
//
// OpenBLAS runs single-threaded (set in parallel.cpp); this wrapper parallelises by cutting the
// larger of m and n into blocks whose boundaries depend only on (m, n, k), one OpenBLAS call per
// block, spread over parallel_for. OpenBLAS's own threading gives results that change with the
// thread count; with fixed blocks every output element is computed the same way on any count.
#pragma once

#include <cstdint>

namespace convnet::cpu {

// op(A) = A^T when trans_a (A stored [k, m] with leading dimension lda), else A ([m, k]); same for B.
// Checks that every extent fits OpenBLAS's 32-bit int. k == 0 gives C = beta * C.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace convnet::cpu
