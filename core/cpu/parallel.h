// parallel_for: a static partition of an index range over the CPU backend's persistent thread pool.
//
// The pool has cpu_threads() - 1 workers plus the calling thread. Every op of the cpu backend is
// written so that its result does not depend on how the range is split (disjoint outputs, and
// reductions through column_reduce in core/cpu/reduce.h), so the thread count never changes a result.
#pragma once

#include <cstdint>
#include <functional>

namespace convnet {

// Calls fn(chunk_begin, chunk_end) for contiguous chunks covering [begin, end): at most
// cpu_threads() chunks, each at least `grain` items long (so tiny ranges stay on one thread).
// Returns when every chunk is done and rethrows the first exception a chunk threw. Calls made
// from inside fn, or while another thread is using the pool, run serially on the caller.
void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Makes OpenBLAS single-threaded: the cpu backend parallelises GEMMs itself with fixed blocks
// (core/cpu/gemm.h), so results do not depend on the thread count. A new cpu backend calls this.
void make_blas_single_threaded();

}  // namespace convnet
