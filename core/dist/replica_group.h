// ReplicaGroup: the processes that train one model data-parallel (core/dist). Each rank holds a
// full copy of the model and trains on its shard of every global batch; the group sums what the
// ranks must agree on: gradients, batchnorm statistics (model.sync_batch_norm), the training
// statistics and evaluation counts.
//
// Contract of every collective: all ranks call it in the same order with the same sizes; the
// result is the same on every rank, and the same for the same inputs on the same number of ranks
// (a fixed reduction order, never arrival order), so two runs of a job are bit-identical. A
// collective that does not complete within the group's timeout (a peer died or hangs) stops the
// whole job with an error naming the collective (MpiGroup calls MPI_Abort).
//
// Implementations: SingleProcess (size 1, every collective is the identity), MpiGroup (MPI_COMM_WORLD,
// core/dist/mpi_group.h, built when MPI is found) and, for tests, ThreadGroup (ranks as threads of
// one process, tests/common/thread_group.h).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace convnet {

class DeviceCollectives;  // core/dist/device_collectives.h

// A non-blocking sum in flight (ReplicaGroup::start_sum). wait() returns once the buffer holds the
// sum; destroying a PendingSum that was not waited for waits.
class PendingSum {
 public:
  virtual ~PendingSum() = default;
  virtual void wait() = 0;
  // Lets the transport advance without waiting (MPI moves non-blocking collectives on only inside
  // MPI calls; the gradient reducer calls this between layers' backward).
  virtual void progress() {}
};

class ReplicaGroup {
 public:
  virtual ~ReplicaGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "single", "mpi", "threads"

  // In place, element-wise over the ranks; blocking.
  virtual void sum(std::span<double> values) = 0;
  virtual void sum(std::span<float> values) = 0;
  virtual void max(std::span<double> values) = 0;
  // Starts an in-place element-wise f32 sum of `values` (gradient buckets, so the transfer overlaps
  // with backward). The buffer must stay alive and untouched until wait().
  virtual std::unique_ptr<PendingSum> start_sum(std::span<float> values) = 0;
  // Rank 0's bytes on every rank (resized on the others).
  virtual void broadcast(std::string& bytes) = 0;
  virtual void broadcast(std::span<float> values) = 0;
  // Waits for every rank.
  virtual void barrier() = 0;
  // The error path of one rank: ends every rank now, so that none waits in a collective for this
  // one. MpiGroup logs `reason` and calls MPI_Abort; the others do nothing (the caller's exception
  // ends the process or the test).
  virtual void abort_job(const std::string& /*reason*/) {}
  // The transport for gradients in GPU memory (NCCL), or none: device gradients then go through the
  // host collectives above by staging copies.
  virtual DeviceCollectives* device_collectives() { return nullptr; }
};

// The group of one process alone.
class SingleProcess final : public ReplicaGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single"; }
  void sum(std::span<double>) override {}
  void sum(std::span<float>) override {}
  void max(std::span<double>) override {}
  std::unique_ptr<PendingSum> start_sum(std::span<float>) override {
    struct Done final : PendingSum {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void broadcast(std::string&) override {}
  void broadcast(std::span<float>) override {}
  void barrier() override {}
};

}  // namespace convnet
