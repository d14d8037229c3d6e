#include "core/dist/mpi_group.h"

#include <mpi.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "core/base/error.h"

namespace convnet {

namespace {

using Clock = std::chrono::steady_clock;

void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(fmt::format("MPI: {} failed: {}", what, std::string(text, static_cast<size_t>(length))));
}

[[noreturn]] void abort_world(const std::string& reason) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  spdlog::error("{}; stopping all {} ranks", reason, size);  // the log pattern names the rank
  spdlog::default_logger()->flush();
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return
}

// Waits for `requests` (one collective, possibly in chunks) until `timeout` seconds have passed,
// then ends the job naming `what`. Polls: yields first (a step's collectives are short), then
// sleeps, so a rank waiting for a slow peer does not burn a core the peer might need.
void wait_all(std::vector<MPI_Request>& requests, const char* what, double timeout) {
  const Clock::time_point start = Clock::now();
  for (MPI_Request& request : requests) {
    for (int polls = 0;; ++polls) {
      int done = 0;
      check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
      if (done) break;
      const double waited = std::chrono::duration<double>(Clock::now() - start).count();
      if (waited > timeout)
        abort_world(fmt::format("{} did not complete within train.distributed_timeout ({} s): a rank died or hangs",
                                what, timeout));
      if (polls < 1000)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  requests.clear();
}

// MPI counts are int: larger buffers go in chunks, each its own collective.
constexpr size_t kMaxChunk = size_t{1} << 30;

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<char>() {
  return MPI_CHAR;
}

template <typename T>
std::vector<MPI_Request> start_allreduce(std::span<T> values, MPI_Op op, const char* what) {
  std::vector<MPI_Request> requests;
  for (size_t offset = 0; offset < values.size(); offset += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, values.size() - offset));
    requests.emplace_back();
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, values.data() + offset, count, mpi_type<T>(), op, MPI_COMM_WORLD,
                             &requests.back()),
              what);
  }
  return requests;
}

template <typename T>
std::vector<MPI_Request> start_broadcast(T* data, size_t size, const char* what) {
  std::vector<MPI_Request> requests;
  for (size_t offset = 0; offset < size; offset += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, size - offset));
    requests.emplace_back();
    check_mpi(MPI_Ibcast(data + offset, count, mpi_type<T>(), 0, MPI_COMM_WORLD, &requests.back()), what);
  }
  return requests;
}

class MpiPendingSum final : public PendingSum {
 public:
  MpiPendingSum(std::vector<MPI_Request> requests, double timeout)
      : requests_(std::move(requests)), timeout_(timeout) {}
  ~MpiPendingSum() override {
    if (!requests_.empty()) wait();
  }
  void wait() override { wait_all(requests_, "the gradient all-reduce (MPI_Iallreduce)", timeout_); }
  void progress() override {
    for (MPI_Request& r : requests_) {
      int done = 0;
      MPI_Test(&r, &done, MPI_STATUS_IGNORE);  // a completed request becomes MPI_REQUEST_NULL
    }
  }

 private:
  std::vector<MPI_Request> requests_;
  double timeout_;
};

class MpiGroup final : public ReplicaGroup {
 public:
  explicit MpiGroup(double timeout) : timeout_(timeout) {
    int provided = 0;
    // One thread (the trainer's) calls MPI; the data loader's threads never do.
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiGroup() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  void sum(std::span<double> v) override { allreduce(v, MPI_SUM, "a sum (MPI_Iallreduce)"); }
  void sum(std::span<float> v) override { allreduce(v, MPI_SUM, "a sum (MPI_Iallreduce)"); }
  void max(std::span<double> v) override { allreduce(v, MPI_MAX, "a maximum (MPI_Iallreduce)"); }
  std::unique_ptr<PendingSum> start_sum(std::span<float> v) override {
    return std::make_unique<MpiPendingSum>(start_allreduce(v, MPI_SUM, "MPI_Iallreduce"), timeout_);
  }
  void broadcast(std::string& bytes) override {
    uint64_t size = bytes.size();
    std::vector<MPI_Request> requests;
    requests.emplace_back();
    check_mpi(MPI_Ibcast(&size, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &requests.back()), "MPI_Ibcast");
    wait_all(requests, "a broadcast of rank 0's bytes (MPI_Ibcast)", timeout_);
    bytes.resize(size);
    requests = start_broadcast(bytes.data(), bytes.size(), "MPI_Ibcast");
    wait_all(requests, "a broadcast of rank 0's bytes (MPI_Ibcast)", timeout_);
  }
  void broadcast(std::span<float> v) override {
    std::vector<MPI_Request> requests = start_broadcast(v.data(), v.size(), "MPI_Ibcast");
    wait_all(requests, "a broadcast of rank 0's values (MPI_Ibcast)", timeout_);
  }
  void barrier() override {
    std::vector<MPI_Request> requests(1);
    check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, &requests[0]), "MPI_Ibarrier");
    wait_all(requests, "a barrier (MPI_Ibarrier)", timeout_);
  }
  void abort_job(const std::string& reason) override { abort_world(reason); }

 private:
  template <typename T>
  void allreduce(std::span<T> v, MPI_Op op, const char* what) {
    std::vector<MPI_Request> requests = start_allreduce(v, op, what);
    wait_all(requests, what, timeout_);
  }

  double timeout_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, static_cast<size_t>(length));
  const size_t comma = version.find(',');  // "Open MPI v4.1.4, package: ..."
  return comma == std::string::npos ? version : version.substr(0, comma);
}

std::unique_ptr<ReplicaGroup> open_mpi_group(double timeout_seconds) {
  return std::make_unique<MpiGroup>(timeout_seconds);
}

}  // namespace convnet
