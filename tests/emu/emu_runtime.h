// A deterministic CPU emulator for CUDA kernels, so the convolution kernels in cuda/ run (and are
// tested) on machines without a GPU.
//
// Every block of a grid runs on its own, one after another. Its threads are user-space fibers
// (ucontext) with their own stacks, run one at a time: each runs until it reaches __syncthreads()
// or returns, then the next one does, so a barrier is a point where every thread of the block has
// run up to it. Compared with real threads this is fast on few cores, fully reproducible, and turns
// a missing barrier into a wrong result instead of a rare race: within one barrier interval thread
// 0 runs entirely before thread 1 starts. Running the same launch again in Order::reverse (blocks
// and threads in reverse order) changes which thread sees whose shared-memory writes, so a kernel
// whose result depends on the order gives different bits. Warp-level operations (__syncwarp,
// __shfl_*_sync) are a second, narrower barrier: the 32 lanes of a warp wait for each other there
// and exchange values, the lock step the hardware gives them.
//
// Kernels themselves are the real sources: tests/emu/cuda_to_cpp.py rewrites the launch syntax
// only, and tests/emu/fake/ supplies the CUDA built-ins (this header, plus the qualifier macros).
// Emulated threads see the CUDA globals threadIdx, blockIdx, blockDim and gridDim below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

struct CUstream_st;  // cudaStream_t is CUstream_st*

// CUDA's built-in index and launch-geometry types (global names, as in CUDA).
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

// The running emulated thread's coordinates; set by the emulator before it resumes a thread.
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

namespace emu {

// A launch the hardware would reject (empty grid, more than 1024 threads, grid y/z above 65535),
// or a kernel that misuses a barrier (some threads wait at __syncthreads while others have
// returned). Thrown from the launch, so the test that ran the kernel fails with the message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The order blocks run in, and threads within each barrier interval.
enum class Order { forward, reverse };
void set_order(Order order);  // for the launches that follow; Order::forward at start
Order order();

// Counts since the last reset_stats(), for tests that check which kernels a launcher ran.
struct Stats {
  int64_t launches = 0;
  int64_t blocks = 0;
  int64_t barriers = 0;       // barrier intervals completed, summed over blocks
  int64_t warp_barriers = 0;  // warp-level lock steps completed (__syncwarp, shuffles), summed over warps
  int64_t global_vector_loads = 0;
  int64_t vector_accesses = 0;  // every 16-byte float4 / int4 load or store, global or shared
};
Stats stats();
void reset_stats();

// Runs `thread_body` once per thread of every block of the grid, in the current order; returns
// when the whole grid has finished (the emulated stream is synchronous). Throws emu::Error for an
// invalid launch or barrier misuse; rethrows an exception a thread let escape.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& thread_body);

// __syncthreads(): suspends the calling emulated thread until every thread of its block has
// reached this barrier. Aborts when called outside an emulated kernel.
void syncthreads();

// Warp-level lock step. A warp is 32 consecutive linear thread indices of a block (the last one
// may be shorter). __syncwarp() and the __shfl_*_sync() shuffles wait until every existing lane of
// the caller's warp has reached a warp-level operation, like the lock step of real hardware; a
// warp with some lanes at a warp operation while others have returned or wait at __syncthreads()
// is an error (emu::Error). Only full masks are emulated: `mask` must name every existing lane.
inline constexpr unsigned kWarpSize = 32;
// The calling emulated thread's linear index in its block (x fastest). Aborts outside a kernel.
unsigned linear_thread_index();
// __syncwarp(mask).
void syncwarp(unsigned mask);
// The shuffle primitive: publishes `value` (the bits of the lane's variable), waits for the warp,
// returns the bits lane `src_lane` published, and waits again so the slots can be reused. Throws
// emu::Error when src_lane is not an existing lane of the warp.
uint64_t warp_exchange(unsigned mask, uint64_t value, unsigned src_lane);

// Throws emu::Error for a 16-byte vector access at an address that is not 16-byte aligned (a
// "misaligned address" fault on the GPU, which x86 would silently accept), and counts the access in
// Stats::vector_accesses. Every float4 and int4 load and store calls it (tests/emu/fake/cuda_runtime.h).
[[noreturn]] void misaligned_vector_access(const void* address);
void count_vector_access();
inline void check_vector_access(const void* address) {
  if (reinterpret_cast<uintptr_t>(address) % 16 != 0) misaligned_vector_access(address);
  count_vector_access();
}
// Throws emu::Error: a launch asked for dynamic shared memory.
[[noreturn]] void dynamic_shared_memory_requested(size_t bytes);
// Counts a 128-bit load from global memory (__ldg of a float4) in Stats::global_vector_loads.
void count_global_vector_load();

// kernel<<<grid, block, shared_bytes, stream>>>(args...): converts the arguments to the kernel's
// parameter types once, as a launch does, and gives every thread its own copy of them. The
// stream is ignored (launches run to completion in call order, a valid schedule of one stream);
// dynamic shared memory is not emulated, so shared_bytes must be 0 (else emu::Error).
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes, CUstream_st* stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  (void)stream;
  if (shared_bytes != 0) dynamic_shared_memory_requested(shared_bytes);
  const std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
  run_grid(grid, block, [&] { std::apply(kernel, params); });
}

// kernel<<<grid, block, ...>>>(args...) for a kernel template whose arguments the call deduces
// (tests/emu/cuda_to_cpp.py wraps the kernel name in a generic lambda `call`, since a template
// name cannot be passed as a function pointer): every thread calls call(args...) with its own
// copy of the decayed arguments, converted to the parameter types by the call itself.
template <class F, class... A>
void launch_deduced(F call, dim3 grid, dim3 block, size_t shared_bytes, CUstream_st* stream, A&&... args) {
  (void)stream;
  if (shared_bytes != 0) dynamic_shared_memory_requested(shared_bytes);
  const std::tuple<std::decay_t<A>...> params(std::forward<A>(args)...);
  run_grid(grid, block, [&] { std::apply(call, params); });  // the kernel's by-value parameters copy
}

}  // namespace emu
