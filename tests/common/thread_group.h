// ThreadGroup: a ReplicaGroup whose ranks are threads of one process, for tests of data-parallel
// code without MPI. run_ranks(n, body) starts n threads, each calling body(group) with its own
// rank's group; every collective gathers the ranks' buffers and sums them in rank order (a fixed
// order, as the contract asks), so results are deterministic.
#pragma once

#include <algorithm>
#include <barrier>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/dist/replica_group.h"

namespace convnet::testing {

class ThreadGroupState {
 public:
  explicit ThreadGroupState(int size) : size_(size), slots_(static_cast<size_t>(size)), sync_(size) {}
  int size() const { return size_; }

  // Every rank publishes a pointer, all wait, `combine` runs on each rank with every rank's pointer,
  // all wait again (so no rank overwrites its buffer while another still reads it).
  template <typename Combine>
  void exchange(int rank, void* mine, Combine&& combine) {
    slots_[static_cast<size_t>(rank)] = mine;
    sync_.arrive_and_wait();
    combine(slots_);
    sync_.arrive_and_wait();
  }

 private:
  int size_;
  std::vector<void*> slots_;
  std::barrier<> sync_;
};

class ThreadGroup final : public ReplicaGroup {
 public:
  ThreadGroup(ThreadGroupState& state, int rank) : state_(state), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return state_.size(); }
  std::string name() const override { return "threads"; }

  void sum(std::span<double> v) override { reduce(v, [](double a, double b) { return a + b; }); }
  void sum(std::span<float> v) override { reduce(v, [](float a, float b) { return a + b; }); }
  void max(std::span<double> v) override { reduce(v, [](double a, double b) { return std::max(a, b); }); }
  // Completes at once: the threads of a test run in lock step anyway.
  std::unique_ptr<PendingSum> start_sum(std::span<float> v) override {
    sum(v);
    struct Done final : PendingSum {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void broadcast(std::string& bytes) override {
    std::string copy;
    state_.exchange(rank_, &bytes, [&](const std::vector<void*>& slots) { copy = *static_cast<std::string*>(slots[0]); });
    bytes = copy;
  }
  void broadcast(std::span<float> v) override {
    std::vector<float> copy(v.size());
    state_.exchange(rank_, v.data(), [&](const std::vector<void*>& slots) {
      const float* root = static_cast<const float*>(slots[0]);
      std::copy(root, root + v.size(), copy.begin());
    });
    std::copy(copy.begin(), copy.end(), v.begin());
  }
  void barrier() override {
    state_.exchange(rank_, nullptr, [](const std::vector<void*>&) {});
  }

 private:
  template <typename T, typename Op>
  void reduce(std::span<T> v, Op op) {
    std::vector<T> out(v.size());
    state_.exchange(rank_, v.data(), [&](const std::vector<void*>& slots) {
      for (size_t i = 0; i < v.size(); ++i) {
        T acc = static_cast<const T*>(slots[0])[i];
        for (size_t r = 1; r < slots.size(); ++r) acc = op(acc, static_cast<const T*>(slots[r])[i]);
        out[i] = acc;
      }
    });
    std::copy(out.begin(), out.end(), v.begin());
  }

  ThreadGroupState& state_;
  int rank_;
};

// Runs body(group) on `ranks` threads, one rank each; rethrows the first exception a rank raised.
// A rank that throws leaves the others waiting in their next collective, so bodies under test
// should not throw midway (a failing EXPECT is fine).
inline void run_ranks(int ranks, const std::function<void(ReplicaGroup&)>& body) {
  ThreadGroupState state(ranks);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      ThreadGroup group(state, r);
      try {
        body(group);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace convnet::testing
