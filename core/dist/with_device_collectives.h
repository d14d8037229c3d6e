// A ReplicaGroup with a device transport added: every host collective goes to `host` (the MPI
// job), device_collectives() answers `device` (NCCL on this rank's GPU). Both must outlive it.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "core/dist/device_collectives.h"
#include "core/dist/replica_group.h"

namespace convnet {

class WithDeviceCollectives final : public ReplicaGroup {
 public:
  WithDeviceCollectives(ReplicaGroup& host, DeviceCollectives& device) : host_(host), device_(device) {}
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string name() const override { return host_.name() + "+" + device_.name(); }
  void sum(std::span<double> values) override { host_.sum(values); }
  void sum(std::span<float> values) override { host_.sum(values); }
  void max(std::span<double> values) override { host_.max(values); }
  std::unique_ptr<PendingSum> start_sum(std::span<float> values) override { return host_.start_sum(values); }
  void broadcast(std::string& bytes) override { host_.broadcast(bytes); }
  void broadcast(std::span<float> values) override { host_.broadcast(values); }
  void barrier() override { host_.barrier(); }
  void abort_job(const std::string& reason) override { host_.abort_job(reason); }
  DeviceCollectives* device_collectives() override { return &device_; }

 private:
  ReplicaGroup& host_;
  DeviceCollectives& device_;
};

}  // namespace convnet
