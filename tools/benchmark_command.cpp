// convnet benchmark: per layer and pass, median and spread of time, FLOP rate, bandwidth and % of
// the device's peak on the chosen backend, slowest first. For convolutions also the same-sized
// GEMM on the same backend (what im2col + GEMM could reach at best). Every pass, and a whole
// training step in images/s, is also timed on each comparison backend (--compare; by default cuDNN
// in the main backend's precision: cudnn and cudnn_tf32 for cuda in fp32, cudnn_tf32 for tf32,
// cudnn@bf16 for bf16) on the same inputs, giving the ratio time_theirs / time_ours (> 1: ours is
// faster) per pass, per layer, and over the whole net. A comparison backend is NAME or
// NAME@PRECISION (that backend in train.precision PRECISION). --precision P is --set
// train.precision=P for the main backend. On a
// GPU a device-to-device copy gives the bandwidth that memory-bound kernels are measured against.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "core/base/backend_registry.h"
#include "core/base/error.h"
#include "core/base/precision.h"
#include "core/base/rng.h"
#include "core/config/config.h"
#include "core/layers/batch_norm.h"
#include "core/layers/conv2d.h"
#include "core/layers/layer_util.h"
#include "core/optim/sgd.h"
#include "core/train/train_step.h"
#ifdef CONVNET_WITH_CUDA
#include "cuda/device.h"
#endif
#include "models/model_builder.h"
#include "tools/commands.h"
#include "tools/pass_timer.h"
#include "tools/session.h"

namespace convnet::cli {

namespace {

constexpr const char* kDefaultCpuModel = R"(model: {name: vgg11, batch_norm: true}
train: {batch_size: 64, backend: auto}
)";
constexpr const char* kDefaultGpuModel = R"(model: {name: vgg16, batch_norm: true}
train: {batch_size: 128, backend: auto}
)";
constexpr const char* kDefaultGpuCompare[] = {"cudnn", "cudnn_tf32"};
constexpr const char* kDefaultTf32Compare[] = {"cudnn_tf32"};  // ours against cuDNN in the same precision
constexpr const char* kDefaultBf16Compare[] = {"cudnn@bf16"};
// Size of the device-to-device copy that sets the bandwidth reference for memory-bound kernels:
// far larger than any L2, so it measures device memory.
constexpr int64_t kCopyBytes = int64_t{256} << 20;
constexpr double kCopyTarget = 0.7;  // issue 3: pooling and elementwise kernels >= 70% of copy bandwidth

struct Row {
  std::string layer, op, pass, backend;
  size_t layer_index = 0;
  bool conv = false;
  Timing timing;
  double flops = 0, bytes = 0;
  double gemm_gflops = 0;  // same-sized GEMM on the same backend (conv passes only)
  double peak_gflops = 0, peak_gbps = 0;
  std::vector<Timing> compare;  // the same pass on each comparison backend, in --compare order

  double gflops() const { return flops / (timing.median_ms * 1e6); }
  double gbps() const { return bytes / (timing.median_ms * 1e6); }
  bool memory_bound() const { return flops <= 0; }
  // % of the backend's peak: FLOP rate for rows that do arithmetic, bandwidth for the rest;
  // 0 when the backend does not know its peak.
  double pct_of_peak() const {
    if (memory_bound()) return peak_gbps > 0 ? 100 * gbps() / peak_gbps : 0;
    return peak_gflops > 0 ? 100 * gflops() / peak_gflops : 0;
  }
  double ratio(size_t c) const { return compare[c].median_ms / timing.median_ms; }
};

// Our time and each comparison backend's, summed over some passes.
struct Total {
  double ours_ms = 0, flops = 0;
  std::vector<double> theirs_ms;
  explicit Total(size_t compares = 0) : theirs_ms(compares, 0.0) {}
  void add(const Row& r) {
    ours_ms += r.timing.median_ms;
    flops += r.flops;
    for (size_t c = 0; c < theirs_ms.size(); ++c) theirs_ms[c] += r.compare[c].median_ms;
  }
  double ratio(size_t c) const { return ours_ms > 0 ? theirs_ms[c] / ours_ms : 0; }
};

struct StepResult {
  std::string backend;  // the main backend's name, or the comparison's NAME[@PRECISION]
  Precision precision = Precision::fp32;
  Timing timing;
  double images_per_sec = 0;
  DeviceActivity activity;  // what one step queued and waited for (Backend::activity)
};

struct CopyBandwidth {
  double bytes = 0;  // of the source tensor; the copy moves twice this (read + write)
  Timing timing;
  double gbps() const { return 2 * bytes / (timing.median_ms * 1e6); }
};

Shape batched(int64_t n, const Shape& s) {
  Shape out{n};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

Tensor random_host(const Shape& shape, Rng& rng) {
  Tensor host(shape);
  for (float& v : host.span()) v = rng.uniform(-1.0f, 1.0f);
  return host;
}

Tensor on_backend(Backend& backend, const Tensor& host) {
  Tensor t = backend.empty(host.shape(), host.dtype());
  backend.copy(t, host);
  return t;
}

Tensor random_on(Backend& backend, const Shape& shape, Rng& rng) {
  return on_backend(backend, random_host(shape, rng));
}

// GFLOP/s of y[m, n] = x[m, k] * w[n, k]^T on `backend`.
double gemm_gflops(Backend& backend, int64_t m, int64_t n, int64_t k, int repeats, Rng& rng) {
  Tensor x = random_on(backend, {m, k}, rng), w = random_on(backend, {n, k}, rng);
  Tensor y = backend.empty({m, n});
  const auto gemm = [&] { backend.linear_forward(x, w, nullptr, y); };
  const Timing t = time_pass(backend, gemm, repeats);
  return 2.0 * static_cast<double>(m * n * k) / (t.median_ms * 1e6);
}

// The fewest bytes a pass must move (each input read once, each output written once), from the
// layer type; x_bytes/y_bytes are the whole batch's input/output, param_bytes the layer's
// parameters. Conv passes each touch one activation-sized input, one output and the filter.
double forward_bytes(const Layer& layer, double x_bytes, double y_bytes, double param_bytes) {
  const std::string type = layer.type();
  double extra = 0;
  if (type == "max_pool2d") extra = y_bytes;               // i32 argmax, one per output
  if (type == "dropout") extra = x_bytes / sizeof(float);  // u8 mask, one per element
  return x_bytes + y_bytes + param_bytes + extra;
}
double backward_bytes(const Layer& layer, double x_bytes, double y_bytes, double param_bytes) {
  const std::string type = layer.type();
  double saved = 0;  // what backward reads besides dy (and the parameters)
  if (type == "relu") saved = y_bytes;
  if (type == "gelu" || type == "batch_norm" || type == "linear") saved = x_bytes;
  if (type == "max_pool2d") saved = y_bytes;               // argmax
  if (type == "dropout") saved = x_bytes / sizeof(float);  // mask
  return y_bytes + x_bytes + saved + 2 * param_bytes;      // dy, dx, saved; read weights, write grads
}

struct PassResult {
  std::string pass;
  Timing timing;
  double flops = 0, bytes = 0;
};

// Times every pass of layer i of `graph` on that layer's backend, on the given host inputs:
// forward, then backward-data and backward-filter for convolutions, one backward for the rest.
std::vector<PassResult> time_layer(Graph& graph, size_t i, const Tensor& host_x, const Tensor& host_dy, int repeats) {
  Layer& layer = graph.layer(i);
  Backend& backend = graph.layer_backend(i);
  const int64_t batch = host_x.shape()[0];
  Tensor x = on_backend(backend, host_x), dy = on_backend(backend, host_dy);
  Tensor y = backend.empty(dy.shape()), dx = backend.empty(x.shape());
  double param_bytes = 0;
  for (Parameter* p : layer.parameters()) param_bytes += static_cast<double>(p->value.bytes());
  const double x_bytes = static_cast<double>(x.bytes()), y_bytes = static_cast<double>(y.bytes());
  const double flops = static_cast<double>(layer.forward_flops()) * static_cast<double>(batch);
  std::function<void()> forward = [&] { layer.forward(x, y, Mode::train); };
  // A batchnorm fused with its conv (core/train/conv_bn_fusion.h) takes the conv's statistics (the
  // conv's forward computes them): timed so, with x's statistics fresh for every repetition.
  if (const auto* bn = dynamic_cast<const BatchNorm2d*>(&layer); bn && bn->input_moments()) {
    const std::shared_ptr<ChannelMoments> moments = bn->input_moments();
    layer_util::ensure_tensor(backend, moments->mean, {bn->channels()});
    layer_util::ensure_tensor(backend, moments->m2, {bn->channels()});
    backend.batch_norm_local_stats(x, moments->mean, moments->m2);
    forward = [&layer, &x, &y, moments] {
      moments->fresh = true;
      layer.forward(x, y, Mode::train);
    };
  }
  std::vector<PassResult> out;
  out.push_back(
      {"forward", time_pass(backend, forward, repeats), flops, forward_bytes(layer, x_bytes, y_bytes, param_bytes)});
  if (auto* conv = dynamic_cast<Conv2d*>(&layer)) {
    // The two backward GEMMs separately (the bias gradient, when present, is a small reduction
    // of dy that the layer adds; the data and filter gradients are what cost).
    Parameter& w = *conv->parameters()[0];
    const Conv2dParams p = conv->conv_params();
    const double bytes = x_bytes + y_bytes + param_bytes;
    // The operands as training passes them: the weight's bf16 copy in bf16 (the forward above
    // wrote it), and dy converted once for both passes (Conv2d::backward; that conversion is in
    // neither pass's time, but in the training step's).
    const Tensor& w_operand = layer_util::weight_operand(backend, w);
    const bool shared_dy = backend.precision() == Precision::bf16 && p.groups == 1;
    const Tensor dy_operand = shared_dy ? layer_util::bf16_values(backend, dy) : dy;
    const auto backward_data = [&] { backend.conv2d_backward_data(dy_operand, w_operand, dx, p); };
    const auto backward_filter = [&] { backend.conv2d_backward_filter(x, dy_operand, w.grad, nullptr, p); };
    out.push_back({"backward-data", time_pass(backend, backward_data, repeats), flops, bytes});
    out.push_back({"backward-filter", time_pass(backend, backward_filter, repeats), flops, bytes});
  } else {
    forward();  // state for backward (argmax, saved statistics)
    const auto backward = [&] { layer.backward(x, y, dy, &dx); };
    out.push_back({"backward", time_pass(backend, backward, repeats), 2 * flops,
                   backward_bytes(layer, x_bytes, y_bytes, param_bytes)});
  }
  return out;
}

// One row per layer and pass of `graph`, each pass also timed on every graph in `others` (the same
// model on a comparison backend) on the same random inputs.
std::vector<Row> benchmark_layers(Graph& graph, const std::vector<Graph*>& others, int64_t batch, int repeats,
                                  Rng& rng) {
  std::vector<Row> rows;
  for (size_t i = 0; i < graph.size(); ++i) {
    Layer& layer = graph.layer(i);
    Backend& backend = graph.layer_backend(i);
    const Tensor host_x = random_host(batched(batch, layer.input_shape()), rng);
    const Tensor host_dy = random_host(batched(batch, layer.output_shape()), rng);
    const std::vector<PassResult> ours = time_layer(graph, i, host_x, host_dy, repeats);
    std::vector<std::vector<PassResult>> theirs;
    for (Graph* other : others) {
      theirs.push_back(time_layer(*other, i, host_x, host_dy, repeats));
      CONVNET_CHECK(theirs.back().size() == ours.size(), "layer {}: {} passes on {} but {} on {}", layer.name(),
                    ours.size(), backend.name(), theirs.back().size(), other->layer_backend(i).name());
    }
    auto* conv = dynamic_cast<Conv2d*>(&layer);
    for (size_t k = 0; k < ours.size(); ++k) {
      Row r;
      r.layer = layer.name();
      r.op = layer.description();
      r.pass = ours[k].pass;
      r.backend = backend.name();
      r.layer_index = i;
      r.conv = conv != nullptr;
      r.timing = ours[k].timing;
      r.flops = ours[k].flops;
      r.bytes = ours[k].bytes;
      r.peak_gflops = backend.peak_gflops();
      r.peak_gbps = backend.peak_gbytes_per_sec();
      for (const auto& t : theirs) r.compare.push_back(t[k].timing);
      rows.push_back(std::move(r));
    }
    if (conv != nullptr) {
      // Each pass against a GEMM of its implicit-GEMM size (FIELD-GUIDE §3).
      const int64_t npq = batch * layer.output_shape()[0] * layer.output_shape()[1];
      const int64_t k = conv->out_channels();
      const int64_t rsc = conv->parameters()[0]->value.numel() / k;
      const size_t first = rows.size() - 3;
      rows[first].gemm_gflops = gemm_gflops(backend, npq, k, rsc, repeats, rng);
      rows[first + 1].gemm_gflops = gemm_gflops(backend, npq, rsc, k, repeats, rng);
      rows[first + 2].gemm_gflops = gemm_gflops(backend, k, rsc, npq, repeats, rng);
    }
  }
  return rows;
}

// A whole training step as the trainer runs it (TrainStep: forward, loss, statistics, backward,
// SGD) on random data already on the first layer's device (the device loader's case); the same
// data for every graph given the same `data_seed`. Also counts what one step queues and waits for,
// measured after the timed steps so that one-time work (cuDNN's algorithm choice) is left out.
StepResult benchmark_step(const Config& config, Graph& graph, int64_t batch, int repeats, uint64_t data_seed) {
  Rng rng(data_seed);
  Backend& in_backend = graph.layer_backend(0);
  Backend& out_backend = graph.output_backend();
  Tensor x = random_on(in_backend, batched(batch, graph.example_shape()), rng);
  const int64_t classes = graph.output_shape()[0];
  Tensor labels({batch}, DType::i32);
  for (int64_t i = 0; i < batch; ++i)
    labels.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  Sgd sgd(config.optimizer,
          make_parameter_groups(config.optimizer, graph.named_parameters(), graph.parameter_backends()));
  TrainStep train_step(graph, sgd, static_cast<float>(config.train.label_smoothing), config.train.seed);
  int64_t number = 0;
  const auto one_step = [&] {
    train_step.forward(x, labels, ++number);
    train_step.backward_and_update(config.optimizer.lr * 1e-3, 0);
  };
  const Timing t = time_pass(out_backend, one_step, repeats, 1);
  const DeviceActivity before = out_backend.activity();
  one_step();
  const DeviceActivity activity = out_backend.activity() - before;
  out_backend.synchronize();
  return {out_backend.name(), out_backend.precision(), t, static_cast<double>(batch) / (t.median_ms * 1e-3), activity};
}

nlohmann::json activity_json(const DeviceActivity& a) {
  return {{"kernel_launches", a.kernel_launches},   {"library_calls", a.library_calls},
          {"host_to_device", a.host_to_device},     {"device_to_host", a.device_to_host},
          {"device_to_device", a.device_to_device}, {"host_waits", a.host_waits}};
}

// "312 kernel launches, 40 cuDNN/cuBLAS calls, copies 1 h2d / 0 d2h / 0 d2d, 1 host wait".
std::string activity_text(const DeviceActivity& a) {
  return fmt::format("{} kernel launches, {} cuDNN/cuBLAS calls, copies {} h2d / {} d2h / {} d2d, {} host wait{}",
                     a.kernel_launches, a.library_calls, a.host_to_device, a.device_to_host, a.device_to_device,
                     a.host_waits, a.host_waits == 1 ? "" : "s");
}

// Device-to-device Backend::copy of a kCopyBytes tensor (random values, not zeros).
CopyBandwidth measure_copy(Backend& backend, int repeats, Rng& rng) {
  const int64_t n = kCopyBytes / static_cast<int64_t>(sizeof(float));
  Tensor src = random_on(backend, {n}, rng);
  Tensor dst = backend.empty({n});
  const auto copy = [&] { backend.copy(dst, src); };
  return {static_cast<double>(src.bytes()), time_pass(backend, copy, repeats)};
}

// The device data path: Backend::augment_batch building one training batch (fast94's transform:
// +-2 px reflect translate, alternating flip) from a resident uint8 set of 4 batches. Bytes: the
// uint8 pixels read plus the f32 batch written.
struct AugmentResult {
  int64_t images = 0;
  double bytes = 0;
  Timing timing;
  double gbps() const { return bytes / (timing.median_ms * 1e6); }
};

AugmentResult measure_augment(Backend& backend, const Shape& example, int64_t batch, int repeats, Rng& rng) {
  const int64_t resident = 4 * batch;
  Tensor host_images(batched(resident, example), DType::u8);
  for (int64_t i = 0; i < host_images.numel(); ++i)
    host_images.data<uint8_t>()[i] = static_cast<uint8_t>(rng.below(256));
  Tensor host_order({resident}, DType::i32);
  for (int64_t i = 0; i < resident; ++i) host_order.data<int32_t>()[i] = static_cast<int32_t>(resident - 1 - i);
  Tensor images = backend.empty(host_images.shape(), DType::u8), order = backend.empty({resident}, DType::i32);
  backend.copy(images, host_images);
  backend.copy(order, host_order);
  Tensor out = backend.empty(batched(batch, example));
  AugmentBatchSpec spec;
  spec.augment = {7, 2, PadMode::reflect, FlipMode::alternating, 0};
  for (int c = 0; c < kMaxImageChannels; ++c) spec.mean[c] = 0.5f, spec.std[c] = 0.25f;
  const auto augment = [&] { backend.augment_batch(images, order, batch, out, spec); };
  const double bytes = static_cast<double>(out.numel()) * (1 + sizeof(float));
  return {batch, bytes, time_pass(backend, augment, repeats)};
}

bool on_gpu(Backend& backend) {
  return backend.device().kind == DeviceKind::cuda;
}

}  // namespace

// The benchmark's config: the file, or the default model for the main backend (resolved here so
// that "auto" is resolved, and warned about, once).
Config benchmark_config(const BenchmarkOptions& options) {
  std::vector<std::string> overrides = options.overrides;
  if (!options.backend.empty()) overrides.push_back("train.backend=" + options.backend);
  if (options.batch_size > 0) overrides.push_back(fmt::format("train.batch_size={}", options.batch_size));
  if (!options.precision.empty()) overrides.push_back("train.precision=" + options.precision);
  if (!options.config.empty()) {
    Config config = load_config(options.config, overrides);
    config.train.backend = resolve_backend_name(config.train.backend);
    return config;
  }
  Config config = parse_config(kDefaultCpuModel, "<default benchmark model>", overrides);
  const std::string backend = resolve_backend_name(config.train.backend);
  if (backend != "cpu") config = parse_config(kDefaultGpuModel, "<default benchmark model>", overrides);
  config.train.backend = backend;
  return config;
}

namespace {

// --compare as given (without "none" and empty entries, duplicates dropped), or the default.
// The default: cuDNN in the precision our cuda backend computes in.
std::vector<std::string> compare_names(const BenchmarkOptions& options, const Backend& main) {
  std::vector<std::string> names;
  if (!options.compare_given) {
    if (main.name() != "cuda" && main.name() != "cuda_tf32") return names;
    switch (main.precision()) {
      case Precision::fp32:
        names.assign(std::begin(kDefaultGpuCompare), std::end(kDefaultGpuCompare));
        break;
      case Precision::tf32:
        names.assign(std::begin(kDefaultTf32Compare), std::end(kDefaultTf32Compare));
        break;
      case Precision::bf16:
        names.assign(std::begin(kDefaultBf16Compare), std::end(kDefaultBf16Compare));
        break;
    }
    return names;
  }
  std::set<std::string> seen;
  for (const std::string& n : options.compare)
    if (!n.empty() && n != "none" && seen.insert(n).second) names.push_back(n);
  return names;
}

// A comparison backend from NAME or NAME@PRECISION; throws as create_backend does for an unknown
// name, ConfigError for an unknown precision or one the backend does not compute.
std::unique_ptr<Backend> create_compare_backend(const std::string& spec) {
  const size_t at = spec.find('@');
  std::unique_ptr<Backend> backend = create_backend(spec.substr(0, at));
  if (at != std::string::npos)
    backend->set_precision(parse_precision(spec.substr(at + 1), fmt::format("--compare {}", spec)));
  return backend;
}

std::string describe_device([[maybe_unused]] Backend& backend) {
#ifdef CONVNET_WITH_CUDA
  if (on_gpu(backend)) return cuda::describe_gpus();
#endif
  return "cpu";
}

nlohmann::json timing_json(const Timing& t) {
  return {{"median_ms", t.median_ms}, {"min_ms", t.min_ms}, {"max_ms", t.max_ms}, {"spread_pct", t.spread_pct()}};
}

nlohmann::json total_json(const Total& total, const std::vector<std::string>& compare,
                          const std::vector<std::string>& compare_precisions) {
  nlohmann::json j = {{"total_ms", total.ours_ms}, {"compare", nlohmann::json::array()}};
  for (size_t c = 0; c < compare.size(); ++c)
    j["compare"].push_back({{"backend", compare[c]},
                            {"precision", compare_precisions[c]},
                            {"total_ms", total.theirs_ms[c]},
                            {"ratio", total.ratio(c)}});
  return j;
}

// "12.3" below 1000, "1234" above: short numbers for the table.
std::string num(double v) {
  return v >= 1000 ? fmt::format("{:.0f}", v) : fmt::format("{:.1f}", v);
}
std::string ratio_text(double r) {
  return fmt::format("{:.2f}x", r);
}

}  // namespace

int benchmark_command(const BenchmarkOptions& options) {
  if (!options.ranks.empty()) return scaling_benchmark(options);
  const Config config = benchmark_config(options);
  const int64_t batch = config.train.batch_size;
  Backends backends(config.train);
  Backend& main = backends.main();
  const bool gpu = on_gpu(main);

  // Comparison backends first, so that an unknown name fails before any timing.
  const std::vector<std::string> compare = compare_names(options, main);
  std::vector<std::unique_ptr<Backend>> compare_backends;
  std::vector<std::string> compare_precisions;  // of each comparison's conv and linear ops
  for (const std::string& name : compare) {
    compare_backends.push_back(create_compare_backend(name));
    compare_precisions.emplace_back(precision_name(compare_backends.back()->precision()));
  }

  const Shape example = example_shape(config.data);
  Graph graph;
  build_graph(config, example, backends, graph);
  // The same model, with the same initial parameters, on each comparison backend.
  std::vector<std::unique_ptr<Graph>> compare_graphs;
  std::vector<Graph*> others;
  for (auto& backend : compare_backends) {
    compare_graphs.push_back(std::make_unique<Graph>());
    add_model_layers(config.model, example, *compare_graphs.back());
    Rng init(config.train.seed);
    compare_graphs.back()->build(example, *backend, init);
    others.push_back(compare_graphs.back().get());
  }
  Rng rng(config.train.seed + 1);

  std::optional<CopyBandwidth> copy;
  if (gpu) copy = measure_copy(main, options.repeats, rng);
  std::vector<Row> rows = benchmark_layers(graph, others, batch, options.repeats, rng);
  std::optional<AugmentResult> augment;
  if (graph.example_shape().size() == 3 && graph.example_shape()[2] <= kMaxImageChannels)
    augment = measure_augment(main, graph.example_shape(), batch, options.repeats, rng);
  std::vector<StepResult> steps;
  steps.push_back(benchmark_step(config, graph, batch, options.repeats, config.train.seed + 2));
  for (size_t c = 0; c < others.size(); ++c) {
    steps.push_back(benchmark_step(config, *others[c], batch, options.repeats, config.train.seed + 2));
    steps.back().backend = compare[c];
  }
  const StepResult& step = steps.front();

  // Totals: convolutions (all passes), every layer, and each layer's passes.
  Total conv_total(compare.size()), all_total(compare.size());
  double gemm_ms = 0;
  std::vector<Total> per_layer(graph.size(), Total(compare.size()));
  for (const Row& r : rows) {
    all_total.add(r);
    per_layer[r.layer_index].add(r);
    if (!r.conv) continue;
    conv_total.add(r);
    gemm_ms += r.flops / (r.gemm_gflops * 1e6);
  }
  std::sort(rows.begin(), rows.end(),
            [](const Row& a, const Row& b) { return a.timing.median_ms > b.timing.median_ms; });

  const std::string model = options.config.empty()
                                ? fmt::format("{}{} (default)", config.model.name, config.model.batch_norm ? " BN" : "")
                                : options.config;
  const double conv_gflops = conv_total.ours_ms > 0 ? conv_total.flops / (conv_total.ours_ms * 1e6) : 0;
  if (options.json) {
    nlohmann::json j;
    j["model"] = model;
    j["backend"] = main.name();
    j["precision"] = precision_name(main.precision());  // of its conv and linear ops (train.precision)
    j["device"] = describe_device(main);
    j["batch_size"] = batch;
    j["repeats"] = options.repeats;
    j["compare_backends"] = compare;
    j["peak"] = {{"gflops_per_sec", main.peak_gflops()}, {"gbytes_per_sec", main.peak_gbytes_per_sec()}};
    if (copy)
      j["copy_bandwidth"] = {{"bytes", copy->bytes},
                             {"median_ms", copy->timing.median_ms},
                             {"spread_pct", copy->timing.spread_pct()},
                             {"gbytes_per_sec", copy->gbps()},
                             {"target_fraction", kCopyTarget},
                             {"target_gbytes_per_sec", kCopyTarget * copy->gbps()}};
    else
      j["copy_bandwidth"] = nullptr;
    if (augment)
      j["augment_batch"] = {{"images", augment->images},
                            {"bytes", augment->bytes},
                            {"median_ms", augment->timing.median_ms},
                            {"spread_pct", augment->timing.spread_pct()},
                            {"gbytes_per_sec", augment->gbps()},
                            {"pct_of_copy_bandwidth",
                             copy ? nlohmann::json(100 * augment->gbps() / copy->gbps()) : nlohmann::json(nullptr)}};
    else
      j["augment_batch"] = nullptr;
    j["layers"] = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json row = {{"layer", r.layer},
                            {"op", r.op},
                            {"pass", r.pass},
                            {"backend", r.backend},
                            {"median_ms", r.timing.median_ms},
                            {"min_ms", r.timing.min_ms},
                            {"max_ms", r.timing.max_ms},
                            {"spread_pct", r.timing.spread_pct()},
                            {"flops", r.flops},
                            {"bytes", r.bytes},
                            {"gflops_per_sec", r.gflops()},
                            {"tflops_per_sec", r.gflops() / 1e3},
                            {"gbytes_per_sec", r.gbps()},
                            {"bound", r.memory_bound() ? "memory" : "compute"}};
      row["pct_of_peak"] = r.pct_of_peak() > 0 ? nlohmann::json(r.pct_of_peak()) : nlohmann::json(nullptr);
      if (copy && r.memory_bound()) row["pct_of_copy_bandwidth"] = 100 * r.gbps() / copy->gbps();
      if (r.gemm_gflops > 0) {
        row["gemm_gflops_per_sec"] = r.gemm_gflops;
        row["ratio_to_gemm"] = r.gflops() / r.gemm_gflops;
      }
      row["compare"] = nlohmann::json::array();
      for (size_t c = 0; c < compare.size(); ++c) {
        nlohmann::json t = timing_json(r.compare[c]);
        t["backend"] = compare[c];
        t["precision"] = compare_precisions[c];
        t["ratio"] = r.ratio(c);
        row["compare"].push_back(t);
      }
      j["layers"].push_back(row);
    }
    j["layer_totals"] = nlohmann::json::array();
    for (size_t i = 0; i < graph.size(); ++i) {
      nlohmann::json t = total_json(per_layer[i], compare, compare_precisions);
      t["layer"] = graph.layer(i).name();
      t["op"] = graph.layer(i).description();
      t["conv"] = dynamic_cast<Conv2d*>(&graph.layer(i)) != nullptr;
      j["layer_totals"].push_back(t);
    }
    j["convolution"] = total_json(conv_total, compare, compare_precisions);
    j["convolution"]["gflops_per_sec"] = conv_gflops;
    j["convolution"]["gemm_equivalent_ms"] = gemm_ms;
    j["convolution"]["ratio_to_gemm"] = conv_total.ours_ms > 0 ? gemm_ms / conv_total.ours_ms : 0;
    j["all_layers"] = total_json(all_total, compare, compare_precisions);
    j["compare_precisions"] = compare_precisions;
    j["train_step"] = {{"backend", step.backend},
                       {"precision", precision_name(step.precision)},
                       {"median_ms", step.timing.median_ms},
                       {"spread_pct", step.timing.spread_pct()},
                       {"images_per_sec", step.images_per_sec}};
    j["train_steps"] = nlohmann::json::array();
    for (const StepResult& s : steps) {
      nlohmann::json t = timing_json(s.timing);
      t["backend"] = s.backend;
      t["precision"] = precision_name(s.precision);
      t["images_per_sec"] = s.images_per_sec;
      t["ratio"] = step.images_per_sec / s.images_per_sec;  // ours / theirs in images/s
      t["activity"] = gpu ? activity_json(s.activity) : nlohmann::json(nullptr);
      j["train_steps"].push_back(t);
    }
    fmt::print("{}\n", j.dump(2));
    return 0;
  }

  // Rates in TFLOP/s on a GPU, GFLOP/s on the CPU.
  const double rate_scale = gpu ? 1e-3 : 1.0;
  const std::string rate_unit = gpu ? "TFLOP/s" : "GFLOP/s";
  fmt::print("convnet benchmark: {} on {} in {} ({}), batch {}, {} timed repeats\n", model, main.name(),
             precision_name(main.precision()), describe_device(main), batch, options.repeats);
  fmt::print(
      "median of the repeats; spread = (max - min) / median; % peak: of the FLOP peak for rows with FLOPs, of the "
      "bandwidth peak for the rest");
  if (!compare.empty()) fmt::print("; xB = time on B / our time (> 1: ours is faster)");
  fmt::print("\n");
  if (main.peak_gflops() > 0 || main.peak_gbytes_per_sec() > 0)
    fmt::print("peak of {}: {:.1f} {} (fp32), {:.0f} GB/s\n", main.name(), main.peak_gflops() * rate_scale, rate_unit,
               main.peak_gbytes_per_sec());
  if (copy)
    fmt::print(
        "device-to-device copy of {} MiB: {:.0f} GB/s (read + write, spread {:.1f}%); target for pooling and "
        "elementwise kernels: >= {:.0f}% = {:.0f} GB/s\n",
        kCopyBytes >> 20, copy->gbps(), copy->timing.spread_pct(), 100 * kCopyTarget, kCopyTarget * copy->gbps());

  size_t op_width = 2, backend_width = 7;
  for (const Row& r : rows) {
    op_width = std::max(op_width, r.op.size());
    backend_width = std::max(backend_width, r.backend.size());
  }
  std::vector<std::string> compare_headers;
  for (const std::string& c : compare) compare_headers.push_back("x" + c);
  auto compare_width = [&](size_t c) { return std::max<size_t>(7, compare_headers[c].size()); };
  fmt::print("{:<12} {:<{}} {:<15} {:>9} {:>7} {:>8} {:>8} {:>6}{} {:>9} {:>6} {:<{}}", "layer", "op", op_width, "pass",
             "median ms", "spread", rate_unit, "GB/s", "%peak", copy ? fmt::format(" {:>6}", "%copy") : "",
             gpu ? "GEMM TF/s" : "GEMM GF/s", "/GEMM", "backend", backend_width);
  for (size_t c = 0; c < compare.size(); ++c) fmt::print(" {:>{}}", compare_headers[c], compare_width(c));
  fmt::print("\n");
  for (const Row& r : rows) {
    const std::string gemm = r.gemm_gflops > 0 ? num(r.gemm_gflops * rate_scale) : "";
    const std::string to_gemm = r.gemm_gflops > 0 ? fmt::format("{:.2f}", r.gflops() / r.gemm_gflops) : "";
    const std::string peak = r.pct_of_peak() > 0 ? fmt::format("{:.1f}", r.pct_of_peak()) : "-";
    std::string pct_copy;
    if (copy)
      pct_copy = fmt::format(" {:>6}", r.memory_bound() ? fmt::format("{:.1f}", 100 * r.gbps() / copy->gbps()) : "");
    fmt::print("{:<12} {:<{}} {:<15} {:>9.3f} {:>6.1f}% {:>8} {:>8} {:>6}{} {:>9} {:>6} {:<{}}", r.layer, r.op,
               op_width, r.pass, r.timing.median_ms, r.timing.spread_pct(),
               r.flops > 0 ? fmt::format("{:.2f}", r.gflops() * rate_scale) : "", num(r.gbps()), peak, pct_copy, gemm,
               to_gemm, r.backend, backend_width);
    for (size_t c = 0; c < compare.size(); ++c) fmt::print(" {:>{}}", ratio_text(r.ratio(c)), compare_width(c));
    fmt::print("\n");
  }

  if (!compare.empty() && conv_total.ours_ms > 0) {
    fmt::print("\nconvolution layers, three passes summed (ours {} in {} vs each comparison:", main.name(),
               precision_name(main.precision()));
    for (size_t c = 0; c < compare.size(); ++c)
      fmt::print("{} {} in {}", c == 0 ? "" : ",", compare[c], compare_precisions[c]);
    fmt::print("):\n");
    fmt::print("{:<12} {:<{}} {:>9}", "layer", "op", op_width, "ours ms");
    for (size_t c = 0; c < compare.size(); ++c)
      fmt::print(" {:>{}} {:>{}}", compare[c] + " ms", std::max<size_t>(9, compare[c].size() + 3), compare_headers[c],
                 compare_width(c));
    fmt::print("\n");
    for (size_t i = 0; i < graph.size(); ++i) {
      if (dynamic_cast<Conv2d*>(&graph.layer(i)) == nullptr) continue;
      fmt::print("{:<12} {:<{}} {:>9.3f}", graph.layer(i).name(), graph.layer(i).description(), op_width,
                 per_layer[i].ours_ms);
      for (size_t c = 0; c < compare.size(); ++c)
        fmt::print(" {:>{}.3f} {:>{}}", per_layer[i].theirs_ms[c], std::max<size_t>(9, compare[c].size() + 3),
                   ratio_text(per_layer[i].ratio(c)), compare_width(c));
      fmt::print("\n");
    }
  }

  fmt::print("\n");
  if (conv_total.ours_ms > 0) {
    fmt::print("convolutions (all passes): {:.2f} ms, {:.2f} {}; the same-sized GEMMs alone: {:.2f} ms ({:.0f}%)\n",
               conv_total.ours_ms, conv_gflops * rate_scale, rate_unit, gemm_ms, 100 * gemm_ms / conv_total.ours_ms);
    for (size_t c = 0; c < compare.size(); ++c)
      fmt::print("  on {}: {:.2f} ms, ours/theirs speed {}\n", compare[c], conv_total.theirs_ms[c],
                 ratio_text(conv_total.ratio(c)));
  }
  fmt::print("all layers (all passes): {:.2f} ms\n", all_total.ours_ms);
  for (size_t c = 0; c < compare.size(); ++c)
    fmt::print("  on {}: {:.2f} ms, ours/theirs speed {}\n", compare[c], all_total.theirs_ms[c],
               ratio_text(all_total.ratio(c)));
  for (const StepResult& s : steps) {
    fmt::print("training step on {} in {}{}: {:.2f} ms median (spread {:.1f}%), {:.1f} images/s", s.backend,
               precision_name(s.precision), &s == &step ? " (main)" : "", s.timing.median_ms, s.timing.spread_pct(),
               s.images_per_sec);
    if (&s != &step) fmt::print(", ours/theirs speed {}", ratio_text(step.images_per_sec / s.images_per_sec));
    fmt::print("\n");
    if (gpu) fmt::print("  host side of one step on {}: {}\n", s.backend, activity_text(s.activity));
  }
  if (gpu)
    fmt::print(
        "  (batches already on the device, as with data.loader device; the host loader adds one h2d copy per step)\n");
  if (augment) {
    fmt::print(
        "data path on {}: augment_batch of {} images (+-2 px reflect translate, alternating flip): {:.3f} ms "
        "median (spread {:.1f}%), {:.1f} GB/s",
        main.name(), augment->images, augment->timing.median_ms, augment->timing.spread_pct(), augment->gbps());
    if (copy) fmt::print(", {:.1f}% of copy bandwidth", 100 * augment->gbps() / copy->gbps());
    fmt::print(", {:.2f}% of the training step\n", 100 * augment->timing.median_ms / step.timing.median_ms);
  }
  return 0;
}

}  // namespace convnet::cli
