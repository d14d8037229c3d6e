// convnet benchmark --ranks N,...: how the model would scale data-parallel, from what is measured
// here plus a stated model of the links.
//
// Measured, on this machine and backend, with train.batch_size images per rank:
// - the forward time, and when each layer's backward completes (the backward hook, each layer's
//   backend synchronized there, so the times are of the device's work);
// - the gradient buckets exactly as GradientReducer makes them (plan_gradient_buckets), and when
//   each is ready: its lowest layer's backward done;
// - under a launcher with several ranks (mpirun -np 2 convnet benchmark --ranks ...), the time of
//   each bucket's all-reduce through the transport the trainer uses (MPI, or NCCL for GPU
//   gradients), median of --repeats.
// Modelled, for each N: a ring all-reduce of b bytes takes latency + 2(N-1)/N * b / bandwidth, at
// --nvlink-gbps inside a node of --gpus-per-node GPUs and --network-gbps across nodes. Buckets go
// one after another on the link, each starting once ready and once the previous one is done, so
// the exposed communication is what ends after backward. Step = forward + backward + exposed (the
// SGD update, the same at every N, is left out). Efficiency = step(1) / step(N).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/config/config.h"
#include "core/dist/open_group.h"
#include "core/dist/with_device_collectives.h"
#include "core/train/gradient_reducer.h"
#include "tools/commands.h"
#include "tools/session.h"

namespace convnet::cli {

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kLinkLatencyMs = 0.01;  // per all-reduce: NCCL's small-message latency is ~10 us

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Forward time and, per layer, when its backward has completed (ms after backward began); medians
// over `repeats` after one warm-up.
struct BackwardTimeline {
  double forward_ms = 0;
  std::vector<double> layer_done_ms;
  double backward_ms() const { return layer_done_ms.empty() ? 0 : layer_done_ms.front(); }
};

BackwardTimeline measure_timeline(Graph& graph, int64_t batch, int repeats, Rng& rng) {
  Backend& in = graph.layer_backend(0);
  Shape x_shape = graph.example_shape();
  x_shape.insert(x_shape.begin(), batch);
  Tensor host_x(x_shape);
  for (float& v : host_x.span()) v = static_cast<float>(rng.normal());
  Tensor x = in.empty(x_shape);
  in.copy(x, host_x);
  std::vector<double> forward;
  std::vector<std::vector<double>> done(graph.size());
  Clock::time_point t0;
  graph.set_backward_hook([&](size_t layer) {
    graph.layer_backend(layer).synchronize();
    done[layer].push_back(ms_since(t0));
  });
  for (int r = 0; r <= repeats; ++r) {
    const Clock::time_point f0 = Clock::now();
    const Tensor& y = graph.forward(x, Mode::train);
    graph.output_backend().synchronize();
    if (r > 0) forward.push_back(ms_since(f0));
    Tensor dy = graph.output_backend().empty(y.shape());
    graph.output_backend().fill(dy, 1.0f / static_cast<float>(y.numel()));
    graph.output_backend().synchronize();
    t0 = Clock::now();
    graph.backward(dy);
    if (r == 0)
      for (auto& d : done) d.clear();  // the warm-up
  }
  graph.set_backward_hook({});
  BackwardTimeline t;
  t.forward_ms = median(forward);
  for (auto& d : done) t.layer_done_ms.push_back(median(d));
  return t;
}

struct BucketTiming {
  size_t bytes = 0;
  double ready_ms = 0;     // backward time when the bucket is complete
  double measured_ms = 0;  // its all-reduce on this machine's transport (0: one rank)
};

// Every bucket's all-reduce through `group`'s transport, as GradientReducer sends it: the device
// transport for buckets it serves, else a host sum. Median of `repeats`, all ranks in step.
double measure_all_reduce(ReplicaGroup& group, GradientBucketPlan& plan, int repeats) {
  std::vector<double> times;
  DeviceCollectives* transport = group.device_collectives();
  std::unique_ptr<DeviceBucket> device;
  if (plan.on_device) {
    std::vector<Tensor*> gradients;
    for (auto [layer, p] : plan.parameters) gradients.push_back(&p->grad);
    device = transport->make_bucket(std::move(gradients));
  }
  std::vector<float> host(plan.on_device ? 0 : plan.floats, 1.0f);
  for (int r = 0; r <= repeats; ++r) {
    group.barrier();
    const Clock::time_point t0 = Clock::now();
    if (device) {
      device->start();
      device->finish();  // the gradients now hold the mean: this is a benchmark
    } else {
      group.start_sum(host)->wait();
    }
    if (r > 0) times.push_back(ms_since(t0));
  }
  // Every rank reports the slowest rank's median, as the step waits for it.
  std::vector<double> m = {median(times)};
  group.max(m);
  return m[0];
}

// The modelled ring all-reduce of `bytes` over N ranks.
double ring_ms(size_t bytes, int n, double gbps) {
  if (n <= 1) return 0;
  return kLinkLatencyMs + 2.0 * (n - 1) / n * static_cast<double>(bytes) / (gbps * 1e6);
}

struct StepModel {
  double comm_ms = 0;     // all the buckets' all-reduces, one after another
  double exposed_ms = 0;  // what ends after backward
};

// Buckets in backward order on one link: each starts when ready and when the link is free.
template <class AllReduceMs>
StepModel overlap(const std::vector<BucketTiming>& buckets, double backward_ms, AllReduceMs&& all_reduce_ms) {
  StepModel m;
  double link_free = 0;
  for (const BucketTiming& b : buckets) {
    const double t = all_reduce_ms(b);
    link_free = std::max(link_free, b.ready_ms) + t;
    m.comm_ms += t;
  }
  m.exposed_ms = std::max(0.0, link_free - backward_ms);
  return m;
}

void print_report(const BenchmarkOptions& options, const Config& config, Graph& graph, ReplicaGroup& group,
                  const BackwardTimeline& timeline, const std::vector<BucketTiming>& buckets) {
  size_t bytes = 0;
  for (const BucketTiming& b : buckets) bytes += b.bytes;
  const double compute_ms = timeline.forward_ms + timeline.backward_ms();
  fmt::print("{} on {}, batch {} per rank: {} parameters, {:.1f} MB of fp32 gradients per step in {} bucket{}\n",
             options.config.empty() ? config.model.name : options.config, graph.layer_backend(0).name(),
             config.train.batch_size, graph.num_parameters(), static_cast<double>(bytes) / 1e6, buckets.size(),
             buckets.size() == 1 ? "" : "s");
  fmt::print("measured: forward {:.2f} ms, backward {:.2f} ms (each layer's end synchronized)\n", timeline.forward_ms,
             timeline.backward_ms());
  fmt::print(
      "| bucket | MB | ready at (ms of backward) | all-reduce ms, {} rank{} here ({}) |\n|---:|---:|---:|---:|\n",
      group.size(), group.size() == 1 ? "" : "s", group.name());
  for (size_t i = 0; i < buckets.size(); ++i)
    fmt::print("| {} | {:.2f} | {:.2f} | {} |\n", i, static_cast<double>(buckets[i].bytes) / 1e6, buckets[i].ready_ms,
               group.size() > 1 ? fmt::format("{:.3f}", buckets[i].measured_ms) : "-");
  if (group.size() > 1) {
    const StepModel here =
        overlap(buckets, timeline.backward_ms(), [](const BucketTiming& b) { return b.measured_ms; });
    fmt::print(
        "this machine, {} ranks: all-reduce {:.2f} ms per step ({:.2f} GB/s bus bandwidth), {:.2f} ms exposed after "
        "backward: step {:.2f} ms, {:.1f}% of one rank's\n",
        group.size(), here.comm_ms,
        2.0 * (group.size() - 1) / group.size() * static_cast<double>(bytes) / (here.comm_ms * 1e6), here.exposed_ms,
        compute_ms + here.exposed_ms, 100 * compute_ms / (compute_ms + here.exposed_ms));
  } else {
    fmt::print("(one rank: run under mpirun -np 2 to measure the all-reduce on this machine)\n");
  }
  fmt::print(
      "\nmodel: ring all-reduce {:.0f} us + 2(N-1)/N x bytes at {:.0f} GB/s inside a node of {} GPUs, {:.0f} GB/s "
      "across nodes; the compute above at every N\n",
      kLinkLatencyMs * 1000, options.nvlink_gbps, options.gpus_per_node, options.network_gbps);
  fmt::print(
      "| ranks | link | all-reduce ms | step ms, no overlap | efficiency, no overlap | step ms, overlapped | "
      "efficiency, overlapped |\n|---:|---|---:|---:|---:|---:|---:|\n");
  for (int n : options.ranks) {
    const bool one_node = n <= options.gpus_per_node;
    const double gbps = one_node ? options.nvlink_gbps : options.network_gbps;
    const StepModel m =
        overlap(buckets, timeline.backward_ms(), [&](const BucketTiming& b) { return ring_ms(b.bytes, n, gbps); });
    const double plain = compute_ms + m.comm_ms, overlapped = compute_ms + m.exposed_ms;
    fmt::print("| {} | {} | {:.4f} | {:.2f} | {:.1f}% | {:.2f} | {:.1f}% |\n", n,
               n == 1 ? "-" : (one_node ? "NVLink" : "network"), m.comm_ms, plain, 100 * compute_ms / plain, overlapped,
               100 * compute_ms / overlapped);
  }
}

}  // namespace

int scaling_benchmark(const BenchmarkOptions& options) {
  if (options.json) throw ConfigError("--json: not available with --ranks (a text report only)");
  for (int n : options.ranks)
    if (n < 1 || n > 100000) throw ConfigError(fmt::format("--ranks: {} is not a number of ranks in [1, 100000]", n));
  const Config config = benchmark_config(options);
  const LaunchInfo launch = detect_launch();
  const std::unique_ptr<ReplicaGroup> host_group = open_replica_group(config.train, launch);
  try {
    check_same_on_all_ranks(*host_group, "config", to_yaml(config));
    const int gpu_index = gpu_of_rank(launch);
    Backends backends(config.train, gpu_index);
    Graph graph;
    build_graph(config, example_shape(config.data), backends, graph);
    const std::unique_ptr<DeviceCollectives> transport =
        open_device_transport(config.train, graph, *host_group, gpu_index);
    std::optional<WithDeviceCollectives> with_transport;
    if (transport) with_transport.emplace(*host_group, *transport);
    ReplicaGroup& group = with_transport ? static_cast<ReplicaGroup&>(*with_transport) : *host_group;

    Rng rng(config.train.seed + 1);
    const BackwardTimeline timeline = measure_timeline(graph, config.train.batch_size, options.repeats, rng);
    DeviceCollectives* device = group.device_collectives();
    std::vector<GradientBucketPlan> plan =
        plan_gradient_buckets(graph, GradientReducer::kDefaultBucketBytes,
                              [&](const Tensor& t) { return device != nullptr && device->serves(t); });
    std::vector<BucketTiming> buckets;
    for (GradientBucketPlan& b : plan) {
      BucketTiming t;
      t.bytes = b.floats * sizeof(float);
      t.ready_ms = timeline.layer_done_ms[b.first_layer];
      if (group.size() > 1) t.measured_ms = measure_all_reduce(group, b, options.repeats);
      buckets.push_back(t);
    }
    if (group.rank() == 0) print_report(options, config, graph, group, timeline, buckets);
    return 0;
  } catch (const std::exception& e) {
    host_group->abort_job(e.what());
    throw;
  }
}

}  // namespace convnet::cli
