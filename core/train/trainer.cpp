#include "core/train/trainer.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "core/base/error.h"
#include "core/base/rng.h"
#include "core/io/safetensors.h"
#include "core/optim/schedule.h"
#include "core/optim/sgd.h"
#include "core/optim/weight_average.h"
#include "core/train/checkpoint.h"
#include "core/train/gradient_reducer.h"
#include "core/train/metrics_log.h"
#include "core/train/plot_svg.h"
#include "core/train/progress.h"
#include "core/train/signals.h"
#include "core/train/train_step.h"

namespace convnet {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Running means over the steps of one epoch. The sums come from the device (TrainStep) at each
// read; the counts of steps and images are the host's.
struct EpochStats {
  TrainStats sums;
  int64_t seen = 0, steps = 0;
  int64_t read_through = 0;  // the last step whose statistics were read
  Clock::time_point start = Clock::now();
  double loss() const { return steps ? sums.loss_sum / static_cast<double>(steps) : 0; }
  double accuracy() const { return seen ? static_cast<double>(sums.correct) / static_cast<double>(seen) : 0; }
  double images_per_sec() const { return static_cast<double>(seen) / std::max(seconds_since(start), 1e-9); }
};

// Fractional epoch position after `batches_done` batches of epoch `epoch`.
double epoch_position(int64_t epoch, int64_t batches_done, int64_t steps_per_epoch) {
  return static_cast<double>(epoch) + static_cast<double>(batches_done) / static_cast<double>(steps_per_epoch);
}

// Copies host batches to the first layer's device one step ahead (Backend::copy_async, awaited
// by TrainStep::forward): on a GPU the upload of batch k+1 overlaps with the backward pass of
// batch k. Two slots, so the upload never overwrites the batch being trained on. A batch already
// on that device (a device-resident loader) or a CPU first layer is used in place.
class BatchStager {
 public:
  explicit BatchStager(Backend& input) : input_(input) {}
  // Starts moving `batch` into slot `slot` (0 or 1).
  void stage(const Batch& batch, size_t slot) {
    if (!needs_staging(batch)) return;
    Tensor& dst = staged_[slot];
    if (!dst.defined() || dst.shape() != batch.images.shape()) dst = input_.empty(batch.images.shape());
    input_.copy_async(dst, batch.images);
  }
  // The images the first layer reads for `batch`, staged into `slot`.
  const Tensor& images(const Batch& batch, size_t slot) const {
    return needs_staging(batch) ? staged_[slot] : batch.images;
  }

 private:
  bool needs_staging(const Batch& batch) const { return batch.images.device() != input_.device(); }
  Backend& input_;
  std::array<Tensor, 2> staged_;
};

// One call of Trainer::run: the loop over epochs and steps, with everything a run keeps.
class TrainingRun {
 public:
  TrainingRun(const Config& config, const std::string& config_yaml, Graph& graph, BatchSource& train, BatchSource* test,
              ReplicaGroup& group);
  TrainResult run(const std::string& resume_path);

 private:
  // Loads the checkpoint (if any) and opens the metrics log and progress.
  void start(const std::string& resume_path);
  // The epochs from the current position until the run ends or stops.
  void train_epochs();
  // One epoch's steps; false when the run stops inside it (a signal, max_steps) without the
  // epoch's ending.
  bool train_epoch(int64_t epoch, EpochStats& stats);
  // One optimizer step on `batch` (staged in `slot`), fetching and staging `next` meanwhile;
  // returns whether there is a next batch to train on in this epoch.
  bool train_step(int64_t epoch, const Batch& batch, Batch& next, size_t slot, EpochStats& stats);
  // After a step: reads the statistics when due (a metrics line every log_every steps and at the
  // epoch's or the run's last step), checkpoints when due, and on a signal saves and returns true.
  bool report_and_checkpoint(int64_t epoch, int64_t batch_index, EpochStats& stats, bool have_next);
  // Reads the statistics of the steps since the last read and reports them (progress, metrics);
  // throws when a step's loss was not finite. Every checkpoint is written after such a read.
  void read_stats(int64_t epoch, int64_t batch_index, EpochStats& stats, bool metrics_line);
  // The epoch's ending: averaging, the summary line, evaluation, checkpoints and the plot.
  void end_epoch(int64_t epoch, const EpochStats& stats, bool finished);
  // The test evaluation of an epoch's end: a metrics line; returns whether it is the best so far.
  bool evaluate_epoch(const std::string& label, double position);
  void resume(const std::string& path);
  // Drops the metrics lines the resumed run writes again: those after its step, and the test
  // lines of its step when the epoch's ending is still to come.
  void forget_metrics_after_resume();
  void save_last();
  // save_checkpoint, with an error that says the previous file at `path` is intact.
  void save_to(const std::string& path);
  void write_plot();
  // Data-parallel: the highest signal any rank received (the ranks stop at the same step), and
  // rank 0's buffers (batchnorm running statistics) on every rank before an evaluation.
  int agreed_signal();
  void broadcast_buffers();

  const Config& config_;
  const TrainConfig& tc_;
  Graph& graph_;
  BatchSource& train_;
  BatchSource* test_;
  ReplicaGroup& group_;
  const bool root_;  // rank 0 alone writes files and reports progress
  const fs::path out_dir_;
  const std::string last_path_, best_path_;
  int64_t steps_per_epoch_ = 0, num_epochs_ = 0, total_steps_ = 0, step_limit_ = 0;
  Tta tta_;
  Sgd sgd_;
  LrSchedule schedule_;
  std::optional<WeightAverage> average_storage_;
  WeightAverage* average_ = nullptr;
  TrainingState state_;
  int64_t last_saved_step_ = -1;       // step of the last checkpoint written or resumed from
  std::optional<MetricsLog> metrics_;  // rank 0's
  std::optional<Progress> progress_;   // rank 0's
  TrainStep step_;
  std::unique_ptr<GradientReducer> reducer_;  // with several ranks
  BatchStager stager_;                        // its two device buffers live for the run, not one epoch
  const StopSignals signals_;                 // installed for the whole run, evaluations included
  TrainResult result_;
};

// The run's validated length: steps per epoch, epochs, and the step count (fractional epochs
// round up; the tolerance keeps a product like 10 * 1.1 = 11.000000000000002 at 11 steps).
int64_t checked_steps_per_epoch(const Graph& graph, const BatchSource& train, const TrainConfig& tc) {
  if (graph.output_shape() != Shape{train.num_classes()})
    throw ConfigError(fmt::format("the model outputs {} but the data has {} classes (set model.num_classes)",
                                  shape_str(graph.output_shape()), train.num_classes()));
  const int64_t steps = train.batches_per_epoch();
  if (steps < 1)
    throw ConfigError(fmt::format("train.batch_size {} is larger than the training set ({} examples)", tc.batch_size,
                                  train.num_examples()));
  return steps;
}
int64_t total_steps_of(const TrainConfig& tc, int64_t steps_per_epoch) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(static_cast<double>(steps_per_epoch) * tc.epochs - 1e-6)));
}

TrainingRun::TrainingRun(const Config& config, const std::string& config_yaml, Graph& graph, BatchSource& train,
                         BatchSource* test, ReplicaGroup& group)
    : config_(config),
      tc_(config.train),
      graph_(graph),
      train_(train),
      test_(test),
      group_(group),
      root_(group.rank() == 0),
      out_dir_(config.output.dir),
      last_path_((out_dir_ / "last.safetensors").string()),
      best_path_((out_dir_ / "best.safetensors").string()),
      steps_per_epoch_(checked_steps_per_epoch(graph, train, config.train)),
      num_epochs_(static_cast<int64_t>(std::ceil(config.train.epochs))),
      total_steps_(total_steps_of(config.train, steps_per_epoch_)),
      step_limit_(config.train.max_steps > 0 ? std::min(total_steps_, config.train.max_steps) : total_steps_),
      tta_(parse_tta(config.train.tta)),
      sgd_(config.optimizer,
           make_parameter_groups(config.optimizer, graph.named_parameters(), graph.parameter_backends())),
      schedule_(config.schedule, config.optimizer.lr, steps_per_epoch_, total_steps_),
      step_(graph, sgd_, static_cast<float>(config.train.label_smoothing), config.train.seed),
      stager_(graph.layer_backend(0)) {
  if (root_) {
    std::error_code ec;
    fs::create_directories(out_dir_, ec);
    if (ec) throw Error(fmt::format("output.dir '{}': cannot create: {}", out_dir_.string(), ec.message()));
    write_file_atomic((out_dir_ / "config.yaml").string(), config_yaml);
  }
  if (group.size() > 1) {
    reducer_ = std::make_unique<GradientReducer>(graph, group);
    step_.set_data_parallel(reducer_.get(), group.rank());
    spdlog::info("gradients: {:.1f} MB per step in {} bucket{}, averaged over {} ranks",
                 static_cast<double>(reducer_->bytes()) / 1e6, reducer_->num_buckets(),
                 reducer_->num_buckets() == 1 ? "" : "s", group.size());
  }
  // Starts as a copy of the initial weights; a resume overwrites it with the saved average.
  if (config.ema.mode != "none") {
    average_storage_.emplace(config.ema, weight_average_targets(graph));
    average_ = &*average_storage_;
  }
  state_.rng = Rng(tc_.seed).state();
  state_.config_yaml = config_yaml;
}

void TrainingRun::resume(const std::string& path) {
  state_ = load_checkpoint(path, graph_, &sgd_, average_);
  if (state_.data_fingerprint != train_.fingerprint())
    throw Error(fmt::format("checkpoint '{}' was trained on different data ({}) than data.path now gives ({})", path,
                            state_.data_fingerprint, train_.fingerprint()));
  check_resume_position(state_, steps_per_epoch_, path);
  std::error_code ec;
  if (fs::equivalent(path, last_path_, ec)) last_saved_step_ = state_.step;  // what last.safetensors holds
  if (root_) forget_metrics_after_resume();
  if (state_.epoch >= num_epochs_)
    spdlog::info("resumed from {}: the run is already complete ({} steps)", path, state_.step);
  else
    spdlog::info("resumed from {}: step {}, epoch {}, batch {}", path, state_.step, state_.epoch + 1,
                 state_.batch_in_epoch);
}

void TrainingRun::forget_metrics_after_resume() {
  // A checkpoint written at an epoch's last step but before that epoch's ending (evaluation)
  // finished: the resumed run evaluates again. (Its training line was written before the checkpoint.)
  const bool ending_pending = state_.epoch < num_epochs_ && state_.batch_in_epoch > 0 &&
                              (state_.batch_in_epoch >= steps_per_epoch_ || state_.step >= total_steps_);
  const int64_t step = state_.step;
  const std::string path = (out_dir_ / "metrics.jsonl").string();
  const size_t dropped = keep_metrics(path, [&](const MetricsRecord& r) {
    return r.step < step || (r.step == step && !(ending_pending && r.split == "test"));
  });
  if (dropped > 0)
    spdlog::info("{}: dropped {} line{} logged after step {} (the checkpoint's), which this run writes again", path,
                 dropped, dropped == 1 ? "" : "s", step);
}

void TrainingRun::save_to(const std::string& path) {
  try {
    save_checkpoint(path, graph_, &sgd_, state_, average_);
  } catch (const Error& e) {
    std::error_code ec;
    const std::string previous = !fs::exists(path, ec) ? "there was none before"
                                 : path == last_path_ && last_saved_step_ >= 0
                                     ? fmt::format("the previous one there (step {}) is intact", last_saved_step_)
                                     : "the previous one there is intact";
    throw Error(
        fmt::format("cannot save the checkpoint '{}' at step {} ({}): {}", path, state_.step, previous, e.what()));
  }
}

void TrainingRun::save_last() {
  if (root_) save_to(last_path_);
  last_saved_step_ = state_.step;
}

int TrainingRun::agreed_signal() {
  const int mine = signals_.received();
  if (group_.size() == 1) return mine;
  std::array<double, 1> sig = {static_cast<double>(mine)};
  group_.max(sig);
  return static_cast<int>(sig[0]);
}

void TrainingRun::broadcast_buffers() {
  if (group_.size() == 1) return;
  for (size_t i = 0; i < graph_.size(); ++i)
    for (Buffer* b : graph_.layer(i).buffers()) {
      if (b->value.dtype() != DType::f32) continue;  // counters: the same on every rank
      Tensor host(b->value.shape());
      Backend& backend = graph_.layer_backend(i);
      backend.copy(host, b->value);
      group_.broadcast(host.span());
      backend.copy(b->value, host);
    }
}

void TrainingRun::write_plot() {
  if (root_ && config_.output.plot == "svg")
    write_file_atomic((out_dir_ / "curves.svg").string(),
                      render_metrics_svg(read_metrics((out_dir_ / "metrics.jsonl").string()), out_dir_.string()));
}

TrainResult TrainingRun::run(const std::string& resume_path) {
  const Clock::time_point run_start = Clock::now();
  start(resume_path);
  train_epochs();
  if (state_.batch_in_epoch != 0) write_plot();  // stopped inside an epoch
  result_.steps = state_.step;
  result_.best_test_accuracy = state_.best_accuracy;
  result_.seconds = seconds_since(run_start);
  return result_;
}

void TrainingRun::start(const std::string& resume_path) {
  const std::string config_yaml = state_.config_yaml;
  if (!resume_path.empty()) resume(resume_path);
  state_.config_yaml = config_yaml;
  state_.data_fingerprint = train_.fingerprint();
  state_.class_names = train_.class_names();
  if (root_) {
    metrics_.emplace((out_dir_ / "metrics.jsonl").string());
    progress_.emplace(step_limit_, tc_.log_every, state_.step);
  }
  result_.best_test_accuracy = state_.best_accuracy;
}

void TrainingRun::train_epochs() {
  for (int64_t epoch = state_.epoch; epoch < num_epochs_; ++epoch) {
    EpochStats stats;
    const bool epoch_ends = train_epoch(epoch, stats);
    if (stats.steps > 0) result_.last_train_loss = stats.loss();
    if (!epoch_ends) return;
    const bool finished = state_.step >= total_steps_;
    end_epoch(epoch, stats, finished);
    // max_steps reached at this epoch's end. (An ending left over from a resume ran no step:
    // the next epoch saves and stops.)
    if (finished || (stats.steps > 0 && state_.step >= step_limit_)) return;
  }
}

bool TrainingRun::train_epoch(int64_t epoch, EpochStats& stats) {
  step_.reset_stats();
  stats.read_through = state_.step;
  Batch batch, next;
  size_t slot = 0;
  bool have = false;
  if (state_.step < step_limit_) {  // else only the epoch's ending is left (a resume after a signal)
    train_.start_epoch(epoch, epoch == state_.epoch ? state_.batch_in_epoch : 0);
    have = train_.next(batch);
  }
  if (have) stager_.stage(batch, slot);
  while (have) {
    const bool have_next = train_step(epoch, batch, next, slot, stats);
    if (report_and_checkpoint(epoch, batch.index, stats, have_next)) return false;
    std::swap(batch, next);
    slot ^= 1;
    have = have_next;
  }
  // The run ends inside its last epoch when epochs is fractional; that ending counts as the
  // epoch's end. max_steps inside an epoch only saves.
  if (state_.step < total_steps_ && state_.batch_in_epoch < steps_per_epoch_) {
    save_last();
    return false;
  }
  return true;
}

bool TrainingRun::train_step(int64_t epoch, const Batch& batch, Batch& next, size_t slot, EpochStats& stats) {
  const double lr = schedule_.lr_at(state_.step);
  step_.forward(stager_.images(batch, slot), batch.labels, state_.step + 1);
  // Prepared by the loader's threads meanwhile; nothing is fetched past the last step.
  const bool have_next = state_.step + 1 < step_limit_ && train_.next(next);
  if (have_next) stager_.stage(next, slot ^ 1);
  step_.backward_and_update(lr, epoch);
  ++state_.step;
  if (average_) average_->after_step(state_.step, total_steps_, steps_per_epoch_);
  state_.batch_in_epoch = batch.index + 1;
  state_.lr = lr;
  stats.seen += batch.labels.numel() * group_.size();  // equal shards of the global batch
  ++stats.steps;
  return have_next;
}

bool TrainingRun::report_and_checkpoint(int64_t epoch, int64_t batch_index, EpochStats& stats, bool have_next) {
  const bool log_due = state_.step % tc_.log_every == 0;
  const bool checkpoint_due = tc_.checkpoint_every > 0 && state_.step % tc_.checkpoint_every == 0;
  const int sig = agreed_signal();
  // The epoch's (or the run's) last step always gets a training line, written before any
  // checkpoint of that step, so a resume from that checkpoint keeps it.
  if (log_due || checkpoint_due || sig || !have_next) read_stats(epoch, batch_index, stats, log_due || !have_next);
  if (checkpoint_due) save_last();
  if (!sig) return false;
  if (progress_) progress_->finish_line();
  spdlog::warn("signal {} received: writing {} and stopping after step {}", sig, last_path_, state_.step);
  save_last();
  result_.interrupted = true;
  result_.signal = sig;
  return true;
}

void TrainingRun::read_stats(int64_t epoch, int64_t batch_index, EpochStats& stats, bool metrics_line) {
  stats.sums = combine_over_ranks(step_.read_stats(), group_);
  const int64_t first_unread = stats.read_through + 1;
  stats.read_through = state_.step;
  if (!stats.sums.finite()) {
    if (progress_) progress_->finish_line();
    const int64_t bad = stats.sums.first_nonfinite_step;
    std::string checkpoint = last_path_;
    if (!fs::exists(last_path_))
      checkpoint += " (none yet)";
    else if (last_saved_step_ >= 0)
      checkpoint += fmt::format(" (step {})", last_saved_step_);
    throw Error(fmt::format(
        "step {} (epoch {}, batch {}): the loss is {}; training stopped when steps {}-{} were read back. The last good "
        "checkpoint is {}. Try a lower optimizer.lr or more warm-up.",
        bad, (bad - 1) / steps_per_epoch_ + 1, (bad - 1) % steps_per_epoch_ + 1, stats.sums.nonfinite_loss,
        first_unread, state_.step, checkpoint));
  }
  if (progress_)
    progress_->update(state_.step, epoch, batch_index, steps_per_epoch_, stats.loss(), stats.accuracy(),
                      stats.images_per_sec());
  if (metrics_ && metrics_line)
    metrics_->write({"train", state_.step, epoch_position(epoch, batch_index + 1, steps_per_epoch_), state_.lr,
                     stats.loss(), stats.accuracy(), stats.images_per_sec()});
}

void TrainingRun::end_epoch(int64_t epoch, const EpochStats& stats, bool finished) {
  if (progress_) progress_->finish_line();
  if (average_) average_->end_epoch(state_.step, steps_per_epoch_);
  const int64_t batches_done = state_.batch_in_epoch;
  const double position = epoch_position(epoch, batches_done, steps_per_epoch_);
  const std::string label = batches_done < steps_per_epoch_ ? fmt::format("epoch {}/{} ({}/{} batches)", epoch + 1,
                                                                          num_epochs_, batches_done, steps_per_epoch_)
                                                            : fmt::format("epoch {}/{}", epoch + 1, num_epochs_);
  state_.epoch = epoch + 1;
  state_.batch_in_epoch = 0;
  if (stats.steps > 0)
    spdlog::info("{}: train loss {:.4f}, accuracy {:.2f}%, {:.0f} images/s", label, stats.loss(),
                 100 * stats.accuracy(), stats.images_per_sec());
  const bool improved = test_ && ((epoch + 1) % tc_.eval_every == 0 || epoch + 1 == num_epochs_ || finished) &&
                        evaluate_epoch(label, position);
  // best before last: a run killed in between resumes before this ending and writes both again.
  if (improved && root_) save_to(best_path_);
  if (tc_.save_each_epoch || finished) save_last();
  write_plot();
}

bool TrainingRun::evaluate_epoch(const std::string& label, double position) {
  EvalResult eval;
  {
    const AverageSwapGuard use_average(average_);  // ema: evaluate the averaged weights
    broadcast_buffers();
    eval = evaluate(graph_, *test_, tta_, &group_);
  }
  result_.final_test_accuracy = eval.accuracy;
  if (metrics_) metrics_->write({"test", state_.step, position, state_.lr, eval.loss, eval.accuracy, 0});
  const bool improved = eval.accuracy > state_.best_accuracy;
  if (improved) state_.best_accuracy = eval.accuracy;
  spdlog::info("{}: test loss {:.4f}, accuracy {:.2f}% (best {:.2f}%){}", label, eval.loss, 100 * eval.accuracy,
               100 * state_.best_accuracy, tta_ == Tta::none ? "" : ", TTA " + tta_name(tta_));
  return improved;
}

}  // namespace

std::vector<AveragedTensor> weight_average_targets(Graph& graph) {
  std::vector<AveragedTensor> out;
  for (size_t i = 0; i < graph.size(); ++i) {
    Layer& layer = graph.layer(i);
    Backend* backend = &graph.layer_backend(i);
    for (Parameter* p : layer.parameters())
      if (!p->frozen) out.push_back({graph.module(i) + "." + p->name, &p->value, backend, Tensor(), p});
    for (Buffer* b : layer.buffers())
      if (b->value.dtype() == DType::f32)
        out.push_back({graph.module(i) + "." + b->name, &b->value, backend, Tensor()});
  }
  return out;
}

Trainer::Trainer(const Config& config, std::string config_yaml, Graph& graph, BatchSource& train, BatchSource* test,
                 ReplicaGroup* group)
    : config_(config),
      config_yaml_(std::move(config_yaml)),
      graph_(graph),
      train_(train),
      test_(test),
      group_(group ? group : &single_) {}

TrainResult Trainer::run(const std::string& resume_path) {
  TrainingRun run(config_, config_yaml_, graph_, train_, test_, *group_);
  return run.run(resume_path);
}

}  // namespace convnet
