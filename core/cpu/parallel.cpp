#include "core/cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"

// OpenBLAS's own thread control (declared here so any cblas.h variant works).
extern "C" void openblas_set_num_threads(int num_threads);

namespace convnet {

namespace {

// Workers wait on a generation counter; run() hands task i to worker i - 1 and runs task 0 itself.
class ThreadPool {
 public:
  explicit ThreadPool(int workers) {
    threads_.reserve(static_cast<size_t>(workers));
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { worker_loop(i); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }

  // Runs task(i) for i in [0, count), count <= workers() + 1, and waits for all of them.
  void run(int count, const std::function<void(int)>& task) {
    {
      std::lock_guard lock(mutex_);
      task_ = &task;
      count_ = count;
      pending_ = count - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    execute(task, 0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  static bool inside_task() { return inside_task_; }

 private:
  void execute(const std::function<void(int)>& task, int index) {
    inside_task_ = true;
    try {
      task(index);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    inside_task_ = false;
  }

  void worker_loop(int worker) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* task = nullptr;
      int count = 0;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        task = task_;
        count = count_;
      }
      // Workers beyond `count` sit this run out; run() only waits for the participating ones.
      if (worker + 1 >= count) continue;
      execute(*task, worker + 1);
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int count_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  static thread_local bool inside_task_;
};

thread_local bool ThreadPool::inside_task_ = false;

std::atomic<int> g_requested_threads{0};  // 0 = all hardware threads

std::mutex& pool_mutex() {  // held while a parallel_for uses the pool
  static std::mutex m;
  return m;
}
std::unique_ptr<ThreadPool>& pool_slot() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}

}  // namespace

void set_cpu_threads(int threads) {
  CONVNET_CHECK(threads >= 0, "set_cpu_threads({}): the thread count must be >= 0 (0 = all cores)", threads);
  g_requested_threads.store(threads);
  make_blas_single_threaded();
}

void make_blas_single_threaded() {
  openblas_set_num_threads(1);
}

int cpu_threads() {
  const int requested = g_requested_threads.load();
  if (requested > 0) return requested;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t length = end - begin;
  if (length <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = cpu_threads();  // read once: the pool size and the chunk count must agree
  const int64_t chunks = std::min<int64_t>(threads, (length + grain - 1) / grain);
  if (chunks <= 1 || ThreadPool::inside_task()) {
    fn(begin, end);
    return;
  }
  std::unique_lock lock(pool_mutex(), std::try_to_lock);
  if (!lock.owns_lock()) {  // another thread is using the pool
    fn(begin, end);
    return;
  }
  auto& pool = pool_slot();
  const int workers = threads - 1;
  if (!pool || pool->workers() != workers) {
    pool.reset();
    pool = std::make_unique<ThreadPool>(workers);
  }
  pool->run(static_cast<int>(chunks), [&](int i) {
    const int64_t b = begin + length * i / chunks;
    const int64_t e = begin + length * (i + 1) / chunks;
    if (b < e) fn(b, e);
  });
}

}  // namespace convnet
