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
// and exchange values, the lock step the hardware gives them. The warp-collective PTX instructions
// (ldmatrix, mma.sync; tests/emu/emu_ptx.h) run inside such a lock step, cp.async copies are
// deferred until the issuing thread's cp.async.wait_group, and a launch may ask for dynamic shared
// memory (emu::dynamic_shared_memory()).
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

// A launch the hardware would reject (empty grid, more than 1024 threads, grid y/z above 65535,
// too much dynamic shared memory), or a kernel that misuses a barrier (some threads wait at
// __syncthreads while others have returned), a warp collective or cp.async. Thrown from the
// launch, so the test that ran the kernel fails with the message.
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
  int64_t ldmatrix = 0;         // ldmatrix instructions, one per warp
  // Extra shared-memory wavefronts the ldmatrix instructions needed because of bank conflicts:
  // per 8-row phase (one 8x8 matrix), the most distinct rows that fall on one bank, minus one.
  int64_t shared_bank_conflicts = 0;
  int64_t mma = 0;                      // mma.sync instructions, one per warp
  int64_t cp_async = 0;                 // 16-byte cp.async copies issued (zero-fills included), one per thread
  size_t max_dynamic_shared_bytes = 0;  // the largest dynamic shared memory a launch asked for
};
Stats stats();
void reset_stats();

// Runs `thread_body` once per thread of every block of the grid, in the current order; returns
// when the whole grid has finished (the emulated stream is synchronous). Throws emu::Error for an
// invalid launch or barrier misuse; rethrows an exception a thread let escape.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& thread_body);
// The same with `dynamic_shared_bytes` of dynamic shared memory (emu::dynamic_shared_memory()).
// The size is checked against the hardware's opt-in maximum only: emu::launch checks the kernel's
// own limit (check_dynamic_shared_memory).
void run_grid(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& thread_body);

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
// The warp-collective primitive, for instructions like ldmatrix and mma.sync that read every lane's
// operands at once: each lane publishes the pointer `mine` under the name `op`, waits for the warp,
// runs `in_lock_step(lanes)` with every lane's published pointer (lanes[l] is lane l's), and waits
// again, so no lane runs kernel code between the first lane's in_lock_step and the last one's.
// Needs a full warp of 32 lanes and a full mask; a lane at another warp-level operation (or at a
// collective of another name) is an emu::Error. A template over two halves rather than a
// std::function: a lane left suspended when another throws never unwinds, and would leak one.
void warp_collective_begin(unsigned mask, const char* op, const void* mine, const void* (&lanes)[kWarpSize]);
void warp_collective_end(unsigned mask);
template <class F>
void warp_collective(unsigned mask, const char* op, const void* mine, F&& in_lock_step) {
  const void* lanes[kWarpSize];
  warp_collective_begin(mask, op, mine, lanes);
  std::forward<F>(in_lock_step)(static_cast<const void* const*>(lanes));
  warp_collective_end(mask);
}
// Copies `bytes` bytes from every lane's `mine` into all_lanes_out (lane l at offset l * bytes),
// in the lock step of warp_collective.
void warp_gather(unsigned mask, const void* mine, size_t bytes, void* all_lanes_out, const char* op = "warp_gather");

// cp.async (cp.async.cg.shared.global, 16 bytes), deferred like the hardware's: cp_async_copy
// checks that both addresses are 16-byte aligned, captures the 16 source bytes (zeros, without
// reading src, when !valid) and adds the copy to the calling thread's open group;
// cp_async_commit closes that group (an empty group counts as a group); cp_async_wait(n) lands
// (writes to dst) every committed group but the newest n. Until then dst keeps its old contents.
// A thread that returns with copies not yet landed is an emu::Error. State is per thread and
// reset for every block.
void cp_async_copy(void* dst, const void* src, bool valid);
void cp_async_commit();
void cp_async_wait(int pending_groups);

// Dynamic shared memory: the launch's `shared_bytes` at a 128-byte boundary, every byte 0xff (NaN
// for floats) when the launch starts and kept from one block to the next, as on the hardware
// (shared memory is not cleared between blocks). emu::Error when the launch asked for none.
// tests/emu/cuda_to_cpp.py rewrites `extern __shared__ T name[];` into a call of it.
void* dynamic_shared_memory();
// Limits of sm_90 (H100, H200): a launch may ask for 48 KiB; more only when the kernel's
// cudaFuncAttributeMaxDynamicSharedMemorySize allows it, which is at most 227 KiB.
inline constexpr size_t kDefaultDynamicSharedBytes = 48 * 1024;
inline constexpr size_t kMaxDynamicSharedBytes = 227 * 1024;
// A kernel's identity for per-kernel attributes: its function's address.
using KernelId = uintptr_t;
inline constexpr KernelId kUnknownKernel = 0;  // a deduced launch: no function pointer to go by
template <class F>
KernelId kernel_id(F* kernel) {
  return reinterpret_cast<KernelId>(kernel);
}
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes); false (the
// attribute unchanged) when bytes is negative or above kMaxDynamicSharedBytes.
bool set_max_dynamic_shared_bytes(KernelId kernel, int bytes);
// Throws emu::Error when a launch of `kernel` may not ask for `bytes` of dynamic shared memory.
void check_dynamic_shared_memory(KernelId kernel, size_t bytes);

// Throws emu::Error for a 16-byte vector access at an address that is not 16-byte aligned (a
// "misaligned address" fault on the GPU, which x86 would silently accept), and counts the access in
// Stats::vector_accesses. Every float4 and int4 load and store calls it (tests/emu/fake/cuda_runtime.h).
[[noreturn]] void misaligned_vector_access(const void* address);
void count_vector_access();
inline void check_vector_access(const void* address) {
  if (reinterpret_cast<uintptr_t>(address) % 16 != 0) misaligned_vector_access(address);
  count_vector_access();
}
// Counts a 128-bit load from global memory (__ldg of a float4) in Stats::global_vector_loads.
void count_global_vector_load();
// Count one warp's ldmatrix (with the extra wavefronts its bank conflicts cost) or mma.sync.
void count_ldmatrix(int64_t extra_wavefronts);
void count_mma();

// kernel<<<grid, block, shared_bytes, stream>>>(args...): converts the arguments to the kernel's
// parameter types once, as a launch does, and gives every thread its own copy of them. The
// stream is ignored (launches run to completion in call order, a valid schedule of one stream).
// shared_bytes of dynamic shared memory are checked against the kernel's limit.
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes, CUstream_st* stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  (void)stream;
  check_dynamic_shared_memory(kernel_id(kernel), shared_bytes);
  const std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
  run_grid(grid, block, shared_bytes, [&] { std::apply(kernel, params); });
}

// kernel<<<grid, block, ...>>>(args...) for a kernel template whose arguments the call deduces
// (tests/emu/cuda_to_cpp.py wraps the kernel name in a generic lambda `call`, since a template
// name cannot be passed as a function pointer): every thread calls call(args...) with its own
// copy of the decayed arguments, converted to the parameter types by the call itself. Without the
// kernel's address only the default 48 KiB of dynamic shared memory can be checked.
template <class F, class... A>
void launch_deduced(F call, dim3 grid, dim3 block, size_t shared_bytes, CUstream_st* stream, A&&... args) {
  (void)stream;
  check_dynamic_shared_memory(kUnknownKernel, shared_bytes);
  const std::tuple<std::decay_t<A>...> params(std::forward<A>(args)...);
  run_grid(grid, block, shared_bytes, [&] { std::apply(call, params); });  // the kernel's by-value parameters copy
}

}  // namespace emu
