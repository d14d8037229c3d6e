// The fiber scheduler behind emu_runtime.h: one ucontext fiber per emulated thread of a block,
// resumed in turn until each reaches a barrier or returns. It also keeps what lives per launch
// (dynamic shared memory), per block (each thread's cp.async copies in flight, the warp-collective
// slots) and per process (the kernels' dynamic shared memory limits).
#include "tests/emu/emu_runtime.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <new>
#include <string>
#include <vector>

// AddressSanitizer must be told about stack switches, or it reports the fibers' stacks as
// overflows of the thread stack. Compiled in only under ASan.
#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace emu {
namespace {

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockZ = 64;
constexpr unsigned kMaxGridYZ = 65535;
constexpr unsigned kMaxGridX = 2147483647u;
// Kernel frames are small (tile accumulators, loader state); the room is for unoptimized and
// sanitizer builds. Pages are committed only when touched.
constexpr size_t kStackBytes = 256 * 1024;

enum class State { ready, at_barrier, at_warp_barrier, done };

struct Fiber {
  ucontext_t context{};
  State state = State::ready;
  char* stack = nullptr;  // lowest usable byte; a PROT_NONE guard page lies below it
  void* asan_fake_stack = nullptr;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "emu: %s\n", what);
  std::abort();
}

std::string hex_address(const void* address) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", address);
  return text;
}

// What a lane publishes for a warp collective.
struct CollectiveSlot {
  const char* op = nullptr;  // nullptr: the lane is not at a collective
  const void* data = nullptr;
};

// A cp.async copy issued and not yet landed: its destination and the source bytes, read at issue.
struct AsyncCopy {
  void* dst = nullptr;
  unsigned char bytes[16] = {};
  uint64_t group = 0;  // the commit group it belongs to (the open group's number until committed)
};

// One thread's cp.async state. Groups are numbered in commit order; the copies in flight are in
// issue order, so the groups a wait lands are a prefix of them.
struct AsyncCopies {
  std::vector<AsyncCopy> in_flight;
  uint64_t committed = 0;  // groups committed so far; the open group has this number
};

// The launch's dynamic shared memory: 128-byte aligned, exactly `bytes` long (so AddressSanitizer
// sees an overrun), poisoned with 0xff.
class DynamicSharedBuffer {
 public:
  explicit DynamicSharedBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_ == 0) return;
    data_ = ::operator new (bytes_, std::align_val_t{kAlignment});
    std::memset(data_, 0xff, bytes_);
  }
  ~DynamicSharedBuffer() {
    if (data_ != nullptr) ::operator delete (data_, std::align_val_t{kAlignment});
  }
  DynamicSharedBuffer(const DynamicSharedBuffer&) = delete;
  DynamicSharedBuffer& operator=(const DynamicSharedBuffer&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  static constexpr size_t kAlignment = 128;
  size_t bytes_;
  void* data_ = nullptr;
};

class Scheduler {
 public:
  void run_grid(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& body);
  void syncthreads();
  unsigned linear_thread_index() const;
  void syncwarp(unsigned mask);
  uint64_t warp_exchange(unsigned mask, uint64_t value, unsigned src_lane);
  void warp_collective_begin(unsigned mask, const char* op, const void* mine, const void* (&lanes)[kWarpSize]);
  void warp_collective_end(unsigned mask);
  void cp_async_copy(void* dst, const void* src, bool valid);
  void cp_async_commit();
  void cp_async_wait(int pending_groups);
  void* dynamic_shared_memory() const;
  bool set_max_dynamic_shared_bytes(KernelId kernel, int bytes);
  void check_dynamic_shared_memory(KernelId kernel, size_t bytes) const;
  Order order = Order::forward;
  Stats stats;

 private:
  static void fiber_entry();
  void prepare(unsigned threads);
  void reset_block_state(unsigned threads);
  void check_copies_landed(unsigned thread) const;
  std::string where(unsigned thread) const;  // "block (x, y, z), thread t" for messages
  void run_block(unsigned threads);
  void release_warps(unsigned threads);
  unsigned lanes_of_warp(unsigned warp) const;  // existing lanes of a warp of the running block
  void resume(Fiber& fiber);                    // scheduler -> fiber, returns when the fiber yields
  void yield(Fiber& fiber, bool done);          // fiber -> scheduler

  std::deque<Fiber> fibers_;  // a deque: growing it never moves a ucontext_t (they point into themselves)
  ucontext_t scheduler_context_{};
  const std::function<void()>* body_ = nullptr;
  unsigned current_ = 0;
  unsigned block_threads_ = 0;
  std::vector<uint64_t> slots_;                          // one shuffle slot per thread of the block
  std::vector<CollectiveSlot> collective_slots_;         // one warp-collective slot per thread of the block
  std::vector<AsyncCopies> async_copies_;                // per thread of the block
  const DynamicSharedBuffer* dynamic_shared_ = nullptr;  // the running launch's
  std::map<KernelId, size_t> max_dynamic_shared_;        // cudaFuncAttributeMaxDynamicSharedMemorySize
  bool in_kernel_ = false;
  std::exception_ptr escaped_;
  void* scheduler_fake_stack_ = nullptr;
  const void* scheduler_stack_bottom_ = nullptr;
  size_t scheduler_stack_size_ = 0;
};

Scheduler& scheduler() {
  static Scheduler s;
  return s;
}

std::string coords(const uint3& b) {
  return "(" + std::to_string(b.x) + ", " + std::to_string(b.y) + ", " + std::to_string(b.z) + ")";
}

void Scheduler::prepare(unsigned threads) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  while (fibers_.size() < threads) {  // stacks are kept for the life of the process
    void* mem =
        mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("cannot map a fiber stack");
    if (mprotect(mem, page, PROT_NONE) != 0) die("cannot protect a fiber stack's guard page");
    Fiber f;
    f.stack = static_cast<char*>(mem) + page;
    fibers_.push_back(f);
  }
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = fibers_[t];
    if (getcontext(&f.context) != 0) die("getcontext failed");
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;  // fibers never return: they switch back explicitly
    makecontext(&f.context, &Scheduler::fiber_entry, 0);
    f.state = State::ready;
    f.asan_fake_stack = nullptr;
  }
}

void Scheduler::resume(Fiber& fiber) {
#ifdef EMU_ASAN
  __sanitizer_start_switch_fiber(&scheduler_fake_stack_, fiber.stack, kStackBytes);
#endif
  if (swapcontext(&scheduler_context_, &fiber.context) != 0) die("swapcontext failed");
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(scheduler_fake_stack_, nullptr, nullptr);
#endif
}

void Scheduler::yield(Fiber& fiber, bool done) {
#ifdef EMU_ASAN
  // A finished fiber passes no fake-stack slot: ASan frees its fake frames.
  __sanitizer_start_switch_fiber(done ? nullptr : &fiber.asan_fake_stack, scheduler_stack_bottom_,
                                 scheduler_stack_size_);
#endif
  if (swapcontext(&fiber.context, &scheduler_context_) != 0) die("swapcontext failed");
  if (done) die("a finished fiber was resumed");
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(fiber.asan_fake_stack, &scheduler_stack_bottom_, &scheduler_stack_size_);
#endif
}

void Scheduler::fiber_entry() {
  Scheduler& s = scheduler();
  Fiber& self = s.fibers_[s.current_];
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.scheduler_stack_bottom_, &s.scheduler_stack_size_);
#endif
  try {
    (*s.body_)();
    s.check_copies_landed(s.current_);
  } catch (...) {  // unwinding cannot cross the fiber's first frame: hand it to the scheduler
    if (!s.escaped_) s.escaped_ = std::current_exception();
  }
  self.state = State::done;
  s.yield(self, true);
}

void Scheduler::syncthreads() {
  if (!in_kernel_) die("__syncthreads() called outside an emulated kernel");
  Fiber& f = fibers_[current_];
  f.state = State::at_barrier;
  yield(f, false);
}

unsigned Scheduler::linear_thread_index() const {
  if (!in_kernel_) die("a warp-level operation called outside an emulated kernel");
  return current_;
}

unsigned Scheduler::lanes_of_warp(unsigned warp) const {
  const unsigned first = warp * kWarpSize;
  return std::min(kWarpSize, block_threads_ - first);
}

void Scheduler::syncwarp(unsigned mask) {
  const unsigned t = linear_thread_index();
  const unsigned lanes = lanes_of_warp(t / kWarpSize);
  const unsigned full = lanes == kWarpSize ? 0xffffffffu : (1u << lanes) - 1u;
  if ((mask & full) != full)
    throw Error("block " + coords(blockIdx) + ", thread " + std::to_string(t) +
                ": a warp-level operation with a partial mask, which is not emulated");
  Fiber& f = fibers_[t];
  f.state = State::at_warp_barrier;
  yield(f, false);
}

uint64_t Scheduler::warp_exchange(unsigned mask, uint64_t value, unsigned src_lane) {
  const unsigned t = linear_thread_index();
  const unsigned first = t - t % kWarpSize;
  if (src_lane >= lanes_of_warp(t / kWarpSize))
    throw Error("block " + coords(blockIdx) + ", thread " + std::to_string(t) + ": a shuffle reads lane " +
                std::to_string(src_lane) + ", which does not exist in its warp");
  slots_[t] = value;
  syncwarp(mask);  // every lane has published
  const uint64_t result = slots_[first + src_lane];
  syncwarp(mask);  // every lane has read: the slots may be overwritten
  return result;
}

void Scheduler::warp_collective_begin(unsigned mask, const char* op, const void* mine,
                                      const void* (&lanes)[kWarpSize]) {
  const unsigned t = linear_thread_index();
  const unsigned first = t - t % kWarpSize;
  if (lanes_of_warp(t / kWarpSize) != kWarpSize)
    throw Error(where(t) + ": " + op + " in a warp of " + std::to_string(lanes_of_warp(t / kWarpSize)) +
                " lanes; warp collectives are emulated for full warps only (a block size multiple of 32)");
  collective_slots_[t] = CollectiveSlot{op, mine};
  syncwarp(mask);  // every lane has published
  for (unsigned l = 0; l < kWarpSize; ++l) {
    const CollectiveSlot& slot = collective_slots_[first + l];
    if (slot.op == nullptr || std::strcmp(slot.op, op) != 0)
      throw Error(where(t) + ": " + op + " while lane " + std::to_string(l) + " of its warp is at " +
                  (slot.op == nullptr ? std::string("another warp-level operation") : std::string(slot.op)) +
                  " (divergent warp-collective code)");
    lanes[l] = slot.data;
  }
}

void Scheduler::warp_collective_end(unsigned mask) {
  syncwarp(mask);  // every lane is done with the published pointers: the slots may be cleared
  collective_slots_[linear_thread_index()] = CollectiveSlot{};
}

// After a pass: releases every warp whose lanes all wait at a warp-level operation; a warp with
// only some of its lanes there can never continue (the others returned or wait at __syncthreads).
void Scheduler::release_warps(unsigned threads) {
  for (unsigned warp = 0; warp * kWarpSize < threads; ++warp) {
    const unsigned first = warp * kWarpSize, lanes = lanes_of_warp(warp);
    unsigned at_warp = 0;
    for (unsigned l = 0; l < lanes; ++l) at_warp += fibers_[first + l].state == State::at_warp_barrier ? 1u : 0u;
    if (at_warp == 0) continue;
    if (at_warp != lanes)
      throw Error("block " + coords(blockIdx) + ", warp " + std::to_string(warp) + ": " + std::to_string(at_warp) +
                  " lanes wait at a warp-level operation while " + std::to_string(lanes - at_warp) +
                  " have returned or wait at __syncthreads() (divergent warp-synchronous code)");
    for (unsigned l = 0; l < lanes; ++l) fibers_[first + l].state = State::ready;
    ++stats.warp_barriers;
  }
}

std::string Scheduler::where(unsigned thread) const {
  return "block " + coords(blockIdx) + ", thread " + std::to_string(thread);
}

void Scheduler::cp_async_copy(void* dst, const void* src, bool valid) {
  const unsigned t = linear_thread_index();
  auto check_aligned = [&](const char* name, const void* address) {
    if (reinterpret_cast<uintptr_t>(address) % 16 != 0)
      throw Error(where(t) + ": cp.async " + name + " " + hex_address(address) + " is not 16-byte aligned");
  };
  check_aligned("destination", dst);
  check_aligned("source", src);  // even for a zero-fill: the instruction takes the address
  AsyncCopies& mine = async_copies_[t];
  AsyncCopy copy;
  copy.dst = dst;
  copy.group = mine.committed;
  if (valid) std::memcpy(copy.bytes, src, sizeof copy.bytes);  // src-size 0 reads nothing
  mine.in_flight.push_back(copy);
  ++stats.cp_async;
}

void Scheduler::cp_async_commit() {
  ++async_copies_[linear_thread_index()].committed;
}

void Scheduler::cp_async_wait(int pending_groups) {
  AsyncCopies& mine = async_copies_[linear_thread_index()];
  if (pending_groups < 0) throw Error("cp.async.wait_group with a negative group count");
  const uint64_t allowed = static_cast<uint64_t>(pending_groups);
  if (mine.committed <= allowed) return;
  const uint64_t complete_below = mine.committed - allowed;  // groups numbered below this must land
  auto copy = mine.in_flight.begin();
  for (; copy != mine.in_flight.end() && copy->group < complete_below; ++copy)
    std::memcpy(copy->dst, copy->bytes, sizeof copy->bytes);
  mine.in_flight.erase(mine.in_flight.begin(), copy);
}

void Scheduler::check_copies_landed(unsigned thread) const {
  const AsyncCopies& mine = async_copies_[thread];
  if (!mine.in_flight.empty())
    throw Error(where(thread) + ": cp.async copies pending at thread exit: missing cp_async_wait (" +
                std::to_string(mine.in_flight.size()) + " copies of 16 bytes never landed)");
}

void* Scheduler::dynamic_shared_memory() const {
  if (!in_kernel_) die("dynamic_shared_memory() called outside an emulated kernel");
  if (dynamic_shared_ == nullptr || dynamic_shared_->bytes() == 0)
    throw Error(where(current_) + ": the kernel uses dynamic shared memory, but its launch asked for 0 bytes");
  return dynamic_shared_->data();
}

bool Scheduler::set_max_dynamic_shared_bytes(KernelId kernel, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > kMaxDynamicSharedBytes) return false;
  max_dynamic_shared_[kernel] = static_cast<size_t>(bytes);
  return true;
}

void Scheduler::check_dynamic_shared_memory(KernelId kernel, size_t bytes) const {
  if (bytes <= kDefaultDynamicSharedBytes) return;
  const std::string asked = "a launch asks for " + std::to_string(bytes) + " bytes of dynamic shared memory";
  if (kernel == kUnknownKernel)
    throw Error(asked +
                ", over the default 48 KiB, for a kernel template launched without template arguments: "
                "the emulator cannot tell which cudaFuncSetAttribute applies; launch it with explicit "
                "template arguments (kernel<...><<<...>>>)");
  const auto limit = max_dynamic_shared_.find(kernel);
  if (limit == max_dynamic_shared_.end())
    throw Error(asked +
                ", over the default 48 KiB, and its kernel has no "
                "cudaFuncAttributeMaxDynamicSharedMemorySize (cudaFuncSetAttribute)");
  if (bytes > limit->second)
    throw Error(asked + ", over its kernel's cudaFuncAttributeMaxDynamicSharedMemorySize of " +
                std::to_string(limit->second));
}

// Every block starts with empty warp-collective slots and no cp.async copies in flight (a block
// that failed may have left some).
void Scheduler::reset_block_state(unsigned threads) {
  if (slots_.size() < threads) slots_.resize(threads);
  if (collective_slots_.size() < threads) collective_slots_.resize(threads);
  if (async_copies_.size() < threads) async_copies_.resize(threads);
  for (unsigned t = 0; t < threads; ++t) {
    collective_slots_[t] = CollectiveSlot{};
    async_copies_[t].in_flight.clear();  // keeps the capacity: blocks are many
    async_copies_[t].committed = 0;
  }
}

void Scheduler::run_block(unsigned threads) {
  prepare(threads);
  block_threads_ = threads;
  reset_block_state(threads);
  for (;;) {  // one barrier interval (or warp lock step) per pass
    unsigned waiting = 0, warp_waiting = 0, finished = 0;
    for (unsigned i = 0; i < threads; ++i) {
      const unsigned t = order == Order::forward ? i : threads - 1 - i;
      Fiber& f = fibers_[t];
      if (f.state == State::ready) {
        current_ = t;
        threadIdx = uint3{t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y)};
        resume(f);
        if (escaped_) return;
      }
      if (f.state == State::at_barrier)
        ++waiting;
      else if (f.state == State::at_warp_barrier)
        ++warp_waiting;
      else
        ++finished;
    }
    if (warp_waiting > 0) {
      release_warps(threads);
      continue;
    }
    if (waiting == 0) return;
    if (finished > 0)
      throw Error("block " + coords(blockIdx) + ": " + std::to_string(waiting) +
                  " threads wait at __syncthreads() while " + std::to_string(finished) +
                  " have returned (a barrier in divergent code)");
    ++stats.barriers;
    for (unsigned t = 0; t < threads; ++t) fibers_[t].state = State::ready;
  }
}

void Scheduler::run_grid(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& body) {
  if (in_kernel_) throw Error("a kernel launch from inside an emulated kernel (dynamic parallelism)");
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || block.z > kMaxBlockZ)
    throw Error("launch with a block of " + std::to_string(block.x) + "x" + std::to_string(block.y) + "x" +
                std::to_string(block.z) + " threads (1 to 1024 in all, z at most 64)");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > kMaxGridX || grid.y > kMaxGridYZ || grid.z > kMaxGridYZ)
    throw Error("launch with a grid of " + std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
                std::to_string(grid.z) + " blocks (x 1 to 2^31-1, y and z 1 to 65535)");
  if (dynamic_shared_bytes > kMaxDynamicSharedBytes)
    throw Error("launch with " + std::to_string(dynamic_shared_bytes) +
                " bytes of dynamic shared memory (at most 227 KiB on sm_90)");
  const DynamicSharedBuffer dynamic_shared(dynamic_shared_bytes);  // kept across the blocks
  ++stats.launches;
  stats.max_dynamic_shared_bytes = std::max(stats.max_dynamic_shared_bytes, dynamic_shared_bytes);
  blockDim = block;
  gridDim = grid;
  body_ = &body;
  dynamic_shared_ = &dynamic_shared;
  escaped_ = nullptr;
  in_kernel_ = true;
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  try {
    for (uint64_t i = 0; i < blocks; ++i) {
      const uint64_t b = order == Order::forward ? i : blocks - 1 - i;
      blockIdx = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                       static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y))};
      ++stats.blocks;
      run_block(static_cast<unsigned>(threads));
      if (escaped_) break;
    }
  } catch (...) {
    in_kernel_ = false;
    body_ = nullptr;
    dynamic_shared_ = nullptr;
    throw;
  }
  in_kernel_ = false;
  body_ = nullptr;
  dynamic_shared_ = nullptr;
  if (escaped_) std::rethrow_exception(escaped_);
}

}  // namespace

void set_order(Order o) {
  scheduler().order = o;
}
Order order() {
  return scheduler().order;
}
Stats stats() {
  return scheduler().stats;
}
void reset_stats() {
  scheduler().stats = Stats{};
}
void run_grid(dim3 grid, dim3 block, const std::function<void()>& thread_body) {
  scheduler().run_grid(grid, block, 0, thread_body);
}
void run_grid(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& thread_body) {
  scheduler().run_grid(grid, block, dynamic_shared_bytes, thread_body);
}
void syncthreads() {
  scheduler().syncthreads();
}
unsigned linear_thread_index() {
  return scheduler().linear_thread_index();
}
void syncwarp(unsigned mask) {
  scheduler().syncwarp(mask);
}
uint64_t warp_exchange(unsigned mask, uint64_t value, unsigned src_lane) {
  return scheduler().warp_exchange(mask, value, src_lane);
}
void warp_collective_begin(unsigned mask, const char* op, const void* mine, const void* (&lanes)[kWarpSize]) {
  scheduler().warp_collective_begin(mask, op, mine, lanes);
}
void warp_collective_end(unsigned mask) {
  scheduler().warp_collective_end(mask);
}
void warp_gather(unsigned mask, const void* mine, size_t bytes, void* all_lanes_out, const char* op) {
  auto* out = static_cast<unsigned char*>(all_lanes_out);
  warp_collective(mask, op, mine, [&](const void* const* lanes) {
    for (unsigned l = 0; l < kWarpSize; ++l) std::memcpy(out + l * bytes, lanes[l], bytes);
  });
}
void cp_async_copy(void* dst, const void* src, bool valid) {
  scheduler().cp_async_copy(dst, src, valid);
}
void cp_async_commit() {
  scheduler().cp_async_commit();
}
void cp_async_wait(int pending_groups) {
  scheduler().cp_async_wait(pending_groups);
}
void* dynamic_shared_memory() {
  return scheduler().dynamic_shared_memory();
}
bool set_max_dynamic_shared_bytes(KernelId kernel, int bytes) {
  return scheduler().set_max_dynamic_shared_bytes(kernel, bytes);
}
void check_dynamic_shared_memory(KernelId kernel, size_t bytes) {
  scheduler().check_dynamic_shared_memory(kernel, bytes);
}
void count_vector_access() {
  ++scheduler().stats.vector_accesses;
}
void count_global_vector_load() {
  ++scheduler().stats.global_vector_loads;
}
void count_ldmatrix(int64_t extra_wavefronts) {
  ++scheduler().stats.ldmatrix;
  scheduler().stats.shared_bank_conflicts += extra_wavefronts;
}
void count_mma() {
  ++scheduler().stats.mma;
}
void misaligned_vector_access(const void* address) {
  throw Error("16-byte vector load or store at " + hex_address(address) + ", which is not 16-byte aligned");
}

}  // namespace emu
