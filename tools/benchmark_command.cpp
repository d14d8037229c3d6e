// convnet benchmark: per layer and pass, median and spread of time, GFLOP/s and GB/s on the
// chosen backend, slowest first; for convolutions also the same-sized GEMM on the same backend
// (what im2col + sgemm could reach at best), and a whole training step in images/s.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/config/config.h"
#include "core/layers/conv2d.h"
#include "core/optim/sgd.h"
#include "tools/commands.h"
#include "tools/pass_timer.h"
#include "tools/session.h"

namespace convnet::cli {

namespace {

constexpr const char* kDefaultModel = R"(model: {name: vgg11, batch_norm: true}
train: {batch_size: 64, backend: auto}
)";

struct Row {
  std::string layer, op, pass, backend;
  Timing timing;
  double flops = 0, bytes = 0;
  double gemm_gflops = 0;  // same-sized GEMM on the same backend (conv passes only)
  double gflops() const { return flops / (timing.median_ms * 1e6); }
  double gbps() const { return bytes / (timing.median_ms * 1e6); }
};

Shape batched(int64_t n, const Shape& s) {
  Shape out{n};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

Tensor random_on(Backend& backend, const Shape& shape, Rng& rng) {
  Tensor host(shape);
  for (float& v : host.span()) v = rng.uniform(-1.0f, 1.0f);
  Tensor t = backend.empty(shape);
  backend.copy(t, host);
  return t;
}

// GFLOP/s of y[m, n] = x[m, k] * w[n, k]^T on `backend`.
double gemm_gflops(Backend& backend, int64_t m, int64_t n, int64_t k, int repeats, Rng& rng) {
  Tensor x = random_on(backend, {m, k}, rng), w = random_on(backend, {n, k}, rng);
  Tensor y = backend.empty({m, n});
  const Timing t = time_pass(
      backend, [&] { backend.linear_forward(x, w, nullptr, y); }, repeats);
  return 2.0 * static_cast<double>(m * n * k) / (t.median_ms * 1e6);
}

std::vector<Row> benchmark_layers(Graph& graph, int64_t batch, int repeats, Rng& rng) {
  std::vector<Row> rows;
  for (size_t i = 0; i < graph.size(); ++i) {
    Layer& layer = graph.layer(i);
    Backend& backend = graph.layer_backend(i);
    Tensor x = random_on(backend, batched(batch, layer.input_shape()), rng);
    Tensor y = backend.empty(batched(batch, layer.output_shape()));
    Tensor dy = random_on(backend, y.shape(), rng);
    Tensor dx = backend.empty(x.shape());
    double param_bytes = 0;
    for (Parameter* p : layer.parameters()) param_bytes += static_cast<double>(p->value.bytes());
    const double act_bytes = static_cast<double>(x.bytes() + y.bytes());
    const double flops = static_cast<double>(layer.forward_flops()) * static_cast<double>(batch);
    auto row = [&](const std::string& pass, const Timing& t, double f, double b) {
      rows.push_back({layer.name(), layer.description(), pass, backend.name(), t, f, b, 0});
    };
    row("forward",
        time_pass(
            backend, [&] { layer.forward(x, y, Mode::train); }, repeats),
        flops, act_bytes + param_bytes);
    if (auto* conv = dynamic_cast<Conv2d*>(&layer)) {
      // The two backward GEMMs separately, each against a GEMM of its own size.
      Parameter& w = *conv->parameters()[0];
      const Conv2dParams p = conv->conv_params();
      const int64_t npq = batch * layer.output_shape()[0] * layer.output_shape()[1];
      const int64_t k = conv->out_channels();
      const int64_t rsc = w.value.numel() / k;
      rows.back().gemm_gflops = gemm_gflops(backend, npq, k, rsc, repeats, rng);
      row("backward-data",
          time_pass(
              backend, [&] { backend.conv2d_backward_data(dy, w.value, dx, p); }, repeats),
          flops, act_bytes + param_bytes);
      rows.back().gemm_gflops = gemm_gflops(backend, npq, rsc, k, repeats, rng);
      row("backward-filter",
          time_pass(
              backend, [&] { backend.conv2d_backward_filter(x, dy, w.grad, nullptr, p); }, repeats),
          flops, act_bytes + param_bytes);
      rows.back().gemm_gflops = gemm_gflops(backend, k, rsc, npq, repeats, rng);
    } else {
      layer.forward(x, y, Mode::train);  // state for backward (argmax, saved statistics)
      row("backward",
          time_pass(
              backend, [&] { layer.backward(x, y, dy, &dx); }, repeats),
          2 * flops, 2 * act_bytes + 2 * param_bytes);
    }
  }
  return rows;
}

// A whole training step (forward, loss, backward, SGD) on random data.
Timing benchmark_step(const Config& config, Graph& graph, int64_t batch, int repeats, Rng& rng) {
  Backend& in_backend = graph.layer_backend(0);
  Backend& out_backend = graph.output_backend();
  Tensor x = random_on(in_backend, batched(batch, graph.example_shape()), rng);
  const int64_t classes = graph.output_shape()[0];
  Tensor host_labels({batch}, DType::i32);
  for (int64_t i = 0; i < batch; ++i)
    host_labels.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  Tensor labels = out_backend.empty({batch}, DType::i32);
  out_backend.copy(labels, host_labels);
  Tensor loss = out_backend.empty({1}), probs = out_backend.empty({batch, classes}),
         dlogits = out_backend.empty({batch, classes});
  Sgd sgd(config.optimizer,
          make_parameter_groups(config.optimizer, graph.named_parameters(), graph.parameter_backends()));
  const float smoothing = static_cast<float>(config.train.label_smoothing);
  return time_pass(
      out_backend,
      [&] {
        const Tensor& logits = graph.forward(x, Mode::train);
        out_backend.softmax_cross_entropy_forward(logits, labels, smoothing, loss, probs);
        out_backend.softmax_cross_entropy_backward(probs, labels, smoothing, dlogits);
        graph.backward(dlogits);
        sgd.step(config.optimizer.lr * 1e-3);
      },
      repeats, 1);
}

}  // namespace

int benchmark_command(const BenchmarkOptions& options) {
  std::vector<std::string> overrides = options.overrides;
  if (!options.backend.empty()) overrides.push_back("train.backend=" + options.backend);
  if (options.batch_size > 0) overrides.push_back(fmt::format("train.batch_size={}", options.batch_size));
  const Config config = options.config.empty() ? parse_config(kDefaultModel, "<default benchmark model>", overrides)
                                               : load_config(options.config, overrides);
  const int64_t batch = config.train.batch_size;
  Backends backends(config.train);
  Graph graph;
  build_graph(config, example_shape(config.data), backends, graph);
  Rng rng(config.train.seed + 1);

  std::vector<Row> rows = benchmark_layers(graph, batch, options.repeats, rng);
  const Timing step = benchmark_step(config, graph, batch, options.repeats, rng);
  const double images_per_sec = static_cast<double>(batch) / (step.median_ms * 1e-3);

  // Convolution totals: our time against the time the same-sized GEMMs take.
  double conv_ms = 0, conv_flops = 0, gemm_ms = 0;
  for (const Row& r : rows) {
    if (r.gemm_gflops <= 0) continue;
    conv_ms += r.timing.median_ms;
    conv_flops += r.flops;
    gemm_ms += r.flops / (r.gemm_gflops * 1e6);
  }
  std::sort(rows.begin(), rows.end(),
            [](const Row& a, const Row& b) { return a.timing.median_ms > b.timing.median_ms; });

  const std::string model = options.config.empty() ? "vgg11 (batch_norm)" : options.config;
  if (options.json) {
    nlohmann::json j;
    j["model"] = model;
    j["backend"] = backends.main().name();
    j["batch_size"] = batch;
    j["repeats"] = options.repeats;
    j["layers"] = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json row = {{"layer", r.layer},
                            {"op", r.op},
                            {"pass", r.pass},
                            {"backend", r.backend},
                            {"median_ms", r.timing.median_ms},
                            {"min_ms", r.timing.min_ms},
                            {"max_ms", r.timing.max_ms},
                            {"gflops_per_sec", r.gflops()},
                            {"gbytes_per_sec", r.gbps()}};
      if (r.gemm_gflops > 0) {
        row["gemm_gflops_per_sec"] = r.gemm_gflops;
        row["ratio_to_gemm"] = r.gflops() / r.gemm_gflops;
      }
      j["layers"].push_back(row);
    }
    j["convolution"] = {{"total_ms", conv_ms},
                        {"gflops_per_sec", conv_ms > 0 ? conv_flops / (conv_ms * 1e6) : 0},
                        {"gemm_equivalent_ms", gemm_ms},
                        {"ratio_to_gemm", conv_ms > 0 ? gemm_ms / conv_ms : 0}};
    j["train_step"] = {
        {"median_ms", step.median_ms}, {"spread_pct", step.spread_pct()}, {"images_per_sec", images_per_sec}};
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("convnet benchmark: {} on {}, batch {}, {} timed repeats (median, spread = (max-min)/median)\n", model,
             backends.main().name(), batch, options.repeats);
  size_t op_width = 2;
  for (const Row& r : rows) op_width = std::max(op_width, r.op.size());
  fmt::print("{:<12} {:<{}} {:<16} {:>10} {:>8} {:>9} {:>8} {:>10} {:>7}\n", "layer", "op", op_width, "pass",
             "median ms", "spread", "GFLOP/s", "GB/s", "GEMM GF/s", "/GEMM");
  for (const Row& r : rows) {
    const std::string gemm = r.gemm_gflops > 0 ? fmt::format("{:.1f}", r.gemm_gflops) : "";
    const std::string ratio = r.gemm_gflops > 0 ? fmt::format("{:.2f}", r.gflops() / r.gemm_gflops) : "";
    fmt::print("{:<12} {:<{}} {:<16} {:>10.3f} {:>7.1f}% {:>9.1f} {:>8.2f} {:>10} {:>7}\n", r.layer, r.op, op_width,
               r.pass, r.timing.median_ms, r.timing.spread_pct(), r.gflops(), r.gbps(), gemm, ratio);
  }
  if (conv_ms > 0)
    fmt::print(
        "convolutions (all passes): {:.1f} ms, {:.1f} GFLOP/s; the same-sized GEMMs alone: {:.1f} ms ({:.0f}%)\n",
        conv_ms, conv_flops / (conv_ms * 1e6), gemm_ms, 100 * gemm_ms / conv_ms);
  fmt::print("training step: {:.1f} ms median (spread {:.1f}%), {:.1f} images/s\n", step.median_ms, step.spread_pct(),
             images_per_sec);
  return 0;
}

}  // namespace convnet::cli
