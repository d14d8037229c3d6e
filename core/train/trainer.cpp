#include "core/train/trainer.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <utility>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/io/safetensors.h"
#include "core/optim/schedule.h"
#include "core/optim/sgd.h"
#include "core/optim/weight_average.h"
#include "core/train/checkpoint.h"
#include "core/train/metrics_log.h"
#include "core/train/plot_svg.h"
#include "core/train/progress.h"
#include "core/train/signals.h"

namespace convnet {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Running means over the steps of one epoch.
struct EpochStats {
  double loss_sum = 0;
  int64_t correct = 0, seen = 0, steps = 0;
  Clock::time_point start = Clock::now();
  double loss() const { return steps ? loss_sum / static_cast<double>(steps) : 0; }
  double accuracy() const { return seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0; }
  double images_per_sec() const { return static_cast<double>(seen) / std::max(seconds_since(start), 1e-9); }
};

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const int64_t n = logits.dim(0), k = logits.dim(1);
  const float* z = logits.f32();
  const int32_t* y = labels.data<int32_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += top1(z + i * k, k) == y[i];
  return correct;
}

// Device-side buffers of the loss computation, resized when the batch size changes.
struct LossBuffers {
  Tensor loss, probs, dlogits, labels, host_loss{Shape{1}}, host_logits;
  void ensure(Backend& backend, const Shape& logits_shape) {
    if (probs.defined() && probs.shape() == logits_shape) return;
    loss = backend.empty({1});
    probs = backend.empty(logits_shape);
    dlogits = backend.empty(logits_shape);
    labels = backend.empty({logits_shape[0]}, DType::i32);
    host_logits = Tensor(logits_shape);
  }
};

}  // namespace

std::vector<AveragedTensor> weight_average_targets(Graph& graph) {
  std::vector<AveragedTensor> out;
  for (size_t i = 0; i < graph.size(); ++i) {
    Layer& layer = graph.layer(i);
    Backend* backend = &graph.layer_backend(i);
    for (Parameter* p : layer.parameters())
      if (!p->frozen) out.push_back({graph.module(i) + "." + p->name, &p->value, backend, Tensor()});
    for (Buffer* b : layer.buffers())
      if (b->value.dtype() == DType::f32)
        out.push_back({graph.module(i) + "." + b->name, &b->value, backend, Tensor()});
  }
  return out;
}

Trainer::Trainer(const Config& config, std::string config_yaml, Graph& graph, BatchSource& train, BatchSource* test)
    : config_(config), config_yaml_(std::move(config_yaml)), graph_(graph), train_(train), test_(test) {}

TrainResult Trainer::run(const std::string& resume_path) {
  namespace fs = std::filesystem;
  const Clock::time_point run_start = Clock::now();
  const TrainConfig& tc = config_.train;
  const fs::path out_dir = config_.output.dir;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw Error(fmt::format("output.dir '{}': cannot create: {}", out_dir.string(), ec.message()));
  write_file_atomic((out_dir / "config.yaml").string(), config_yaml_);
  const std::string last_path = (out_dir / "last.safetensors").string();
  const std::string best_path = (out_dir / "best.safetensors").string();

  if (graph_.output_shape() != Shape{train_.num_classes()})
    throw ConfigError(fmt::format("the model outputs {} but the data has {} classes (set model.num_classes)",
                                  shape_str(graph_.output_shape()), train_.num_classes()));
  const int64_t steps_per_epoch = train_.batches_per_epoch();
  if (steps_per_epoch < 1)
    throw ConfigError(fmt::format("train.batch_size {} is larger than the training set ({} examples)", tc.batch_size,
                                  train_.num_examples()));
  const auto num_epochs = static_cast<int64_t>(std::ceil(tc.epochs));
  // The tolerance keeps a product like 10 * 1.1 = 11.000000000000002 at 11 steps.
  const auto total_steps =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(static_cast<double>(steps_per_epoch) * tc.epochs - 1e-6)));
  const int64_t step_limit = tc.max_steps > 0 ? std::min(total_steps, tc.max_steps) : total_steps;
  const Tta tta = parse_tta(tc.tta);
  Sgd sgd(config_.optimizer,
          make_parameter_groups(config_.optimizer, graph_.named_parameters(), graph_.parameter_backends()));
  const LrSchedule schedule(config_.schedule, config_.optimizer.lr, steps_per_epoch, total_steps);
  // Starts as a copy of the initial weights; a resume overwrites it with the saved average.
  std::optional<WeightAverage> average_storage;
  if (config_.ema.mode != "none") average_storage.emplace(config_.ema, weight_average_targets(graph_));
  WeightAverage* average = average_storage ? &*average_storage : nullptr;

  TrainingState state;
  state.rng = Rng(tc.seed).state();
  if (!resume_path.empty()) {
    state = load_checkpoint(resume_path, graph_, &sgd, average);
    if (state.data_fingerprint != train_.fingerprint())
      throw Error(fmt::format("checkpoint '{}' was trained on different data ({}) than data.path now gives ({})",
                              resume_path, state.data_fingerprint, train_.fingerprint()));
    if (state.epoch >= num_epochs)
      spdlog::info("resumed from {}: the run is already complete ({} steps)", resume_path, state.step);
    else
      spdlog::info("resumed from {}: step {}, epoch {}, batch {}", resume_path, state.step, state.epoch + 1,
                   state.batch_in_epoch);
  }
  state.config_yaml = config_yaml_;
  state.data_fingerprint = train_.fingerprint();

  MetricsLog metrics((out_dir / "metrics.jsonl").string());
  const StopSignals signals;
  Progress progress(step_limit, tc.log_every);
  Backend& loss_backend = graph_.output_backend();
  LossBuffers buffers;
  TrainResult result;
  result.best_test_accuracy = state.best_accuracy;
  const float smoothing = static_cast<float>(tc.label_smoothing);
  auto save_last = [&] { save_checkpoint(last_path, graph_, &sgd, state, average); };
  auto write_plot = [&] {
    if (config_.output.plot == "svg")
      write_file_atomic((out_dir / "curves.svg").string(),
                        render_metrics_svg(read_metrics((out_dir / "metrics.jsonl").string()), out_dir.string()));
  };

  // Each batch is uploaded one step ahead (Backend::copy_async): on a GPU the copy of batch k+1
  // overlaps with the backward pass of batch k. A CPU first layer reads the host batch in place.
  Backend& input_backend = graph_.layer_backend(0);
  std::array<Tensor, 2> staged;
  // Batches from a device-resident loader are already where the first layer reads them.
  auto needs_staging = [&](const Batch& b) { return b.images.device() != input_backend.device(); };
  auto stage = [&](const Batch& b, size_t slot) {
    if (!needs_staging(b)) return;
    if (!staged[slot].defined() || staged[slot].shape() != b.images.shape())
      staged[slot] = input_backend.empty(b.images.shape());
    input_backend.copy_async(staged[slot], b.images);
  };
  Batch batch, next;
  for (int64_t epoch = state.epoch; epoch < num_epochs; ++epoch) {
    EpochStats stats;
    bool stop = false;
    size_t slot = 0;
    bool have = false;
    if (state.step < step_limit) {  // else only the epoch's ending is left (a resume after a signal)
      train_.start_epoch(epoch, epoch == state.epoch ? state.batch_in_epoch : 0);
      have = train_.next(batch);
    }
    if (have) stage(batch, slot);
    while (!stop && have) {
      const double lr = schedule.lr_at(state.step);
      graph_.set_step_seed(hash64(tc.seed, static_cast<uint64_t>(state.step)));
      const Tensor& logits = graph_.forward(needs_staging(batch) ? staged[slot] : batch.images, Mode::train);
      buffers.ensure(loss_backend, logits.shape());
      loss_backend.copy(buffers.labels, batch.labels);
      loss_backend.softmax_cross_entropy_forward(logits, buffers.labels, smoothing, buffers.loss, buffers.probs);
      loss_backend.copy(buffers.host_loss, buffers.loss);
      loss_backend.copy(buffers.host_logits, logits);
      loss_backend.synchronize();
      const double loss = buffers.host_loss.f32()[0];
      if (!std::isfinite(loss)) {
        progress.finish_line();
        throw Error(fmt::format(
            "step {} (epoch {}, batch {}): the loss is {}; training stopped. The last good checkpoint is {}{}. "
            "Try a lower optimizer.lr or more warm-up.",
            state.step + 1, epoch + 1, batch.index + 1, loss, last_path, fs::exists(last_path) ? "" : " (none yet)"));
      }
      // Prepared by the loader's threads meanwhile; nothing is fetched past the last step.
      const bool have_next = state.step + 1 < step_limit && train_.next(next);
      if (have_next) stage(next, slot ^ 1);
      loss_backend.softmax_cross_entropy_backward(buffers.probs, buffers.labels, smoothing, buffers.dlogits);
      graph_.backward(buffers.dlogits);
      sgd.step(lr, epoch);
      ++state.step;
      if (average) average->after_step(state.step, total_steps, steps_per_epoch);
      state.batch_in_epoch = batch.index + 1;
      state.lr = lr;

      stats.loss_sum += loss;
      stats.correct += count_correct(buffers.host_logits, batch.labels);
      stats.seen += batch.labels.numel();
      ++stats.steps;
      progress.update(state.step, epoch, batch.index, steps_per_epoch, stats.loss(), stats.accuracy(),
                      stats.images_per_sec());
      const double epoch_position =
          static_cast<double>(epoch) + static_cast<double>(batch.index + 1) / static_cast<double>(steps_per_epoch);
      if (state.step % tc.log_every == 0)
        metrics.write(
            {"train", state.step, epoch_position, lr, stats.loss(), stats.accuracy(), stats.images_per_sec()});
      if (tc.checkpoint_every > 0 && state.step % tc.checkpoint_every == 0) save_last();
      if (const int sig = signals.received()) {
        progress.finish_line();
        spdlog::warn("signal {} received: writing {} and stopping after step {}", sig, last_path, state.step);
        save_last();
        result.interrupted = true;
        result.signal = sig;
        stop = true;
      } else if (state.step >= step_limit) {
        stop = true;  // the run's last step (then the epoch ends below), or max_steps
      }
      std::swap(batch, next);
      slot ^= 1;
      have = have_next;
    }
    if (stats.steps > 0) result.last_train_loss = stats.loss();
    if (result.interrupted) break;
    // The run ends inside its last epoch when epochs is fractional; that ending counts as the
    // epoch's end. max_steps inside an epoch only saves.
    const bool finished = state.step >= total_steps;
    if (!finished && state.batch_in_epoch < steps_per_epoch) {
      save_last();
      break;
    }

    progress.finish_line();
    if (average) average->end_epoch(state.step, steps_per_epoch);
    const int64_t batches_done = state.batch_in_epoch;
    const double epoch_position =
        static_cast<double>(epoch) + static_cast<double>(batches_done) / static_cast<double>(steps_per_epoch);
    const std::string label = batches_done < steps_per_epoch ? fmt::format("epoch {}/{} ({}/{} batches)", epoch + 1,
                                                                           num_epochs, batches_done, steps_per_epoch)
                                                             : fmt::format("epoch {}/{}", epoch + 1, num_epochs);
    state.epoch = epoch + 1;
    state.batch_in_epoch = 0;
    if (stats.steps > 0)
      spdlog::info("{}: train loss {:.4f}, accuracy {:.2f}%, {:.0f} images/s", label, stats.loss(),
                   100 * stats.accuracy(), stats.images_per_sec());
    bool improved = false;
    if (test_ && ((epoch + 1) % tc.eval_every == 0 || epoch + 1 == num_epochs || finished)) {
      EvalResult eval;
      {
        const AverageSwapGuard use_average(average);  // ema: evaluate the averaged weights
        eval = evaluate(graph_, *test_, tta);
      }
      result.final_test_accuracy = eval.accuracy;
      metrics.write({"test", state.step, epoch_position, state.lr, eval.loss, eval.accuracy, 0});
      improved = eval.accuracy > state.best_accuracy;
      if (improved) state.best_accuracy = eval.accuracy;
      spdlog::info("{}: test loss {:.4f}, accuracy {:.2f}% (best {:.2f}%){}", label, eval.loss, 100 * eval.accuracy,
                   100 * state.best_accuracy, tta == Tta::none ? "" : ", TTA " + tta_name(tta));
    }
    if (tc.save_each_epoch || finished) save_last();
    if (improved) save_checkpoint(best_path, graph_, &sgd, state, average);
    write_plot();
    if (stop || finished) break;
  }
  if (state.batch_in_epoch != 0) write_plot();  // stopped inside an epoch
  result.steps = state.step;
  result.best_test_accuracy = state.best_accuracy;
  result.seconds = seconds_since(run_start);
  return result;
}

}  // namespace convnet
