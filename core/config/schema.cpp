#include "core/config/schema.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>

namespace convnet::config_schema {

bool Range::contains(double v) const {
  if (std::isnan(v)) return false;
  if (lo_open ? !(v > lo) : !(v >= lo)) return false;
  if (hi_open ? !(v < hi) : !(v <= hi)) return false;
  return true;
}

namespace {
// A bound as people write it: 1000000, not 1e+06.
std::string bound_text(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}
}  // namespace

std::string Range::describe() const {
  const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  if (has_lo && has_hi)
    return fmt::format(" in {}{}, {}{}", lo_open ? '(' : '[', bound_text(lo), bound_text(hi), hi_open ? ')' : ']');
  if (has_lo) return fmt::format(" {} {}", lo_open ? ">" : ">=", bound_text(lo));
  if (has_hi) return fmt::format(" {} {}", hi_open ? "<" : "<=", bound_text(hi));
  return "";
}

namespace {

// A function pointer to the Config member `member`, e.g. REF(train.epochs).
#define REF(member) (+[](Config& c) -> decltype((c.member)) { return c.member; })

// Table rows: a plain key, a key with a numeric range, a key with a fixed set of values,
// a number list of fixed length.
Field key(std::string_view path, Accessor ref, Range range = Range::any()) {
  return {path, ref, range, {}, 0};
}
Field choice(std::string_view path, Accessor ref, std::vector<std::string_view> choices) {
  return {path, ref, Range::any(), std::move(choices), 0};
}
Field fixed_list(std::string_view path, Accessor ref, Range range, int size) {
  return {path, ref, range, {}, size};
}

const std::vector<Field>& field_table() {
  static const std::vector<Field> table = {
      choice("model.name", REF(model.name),
             {"vgg11", "vgg13", "vgg16", "vgg19", "vgg", "resnet18", "resnet34", "resnet20", "resnet32", "resnet44",
              "resnet56", "resnet110", "resnet1202", "resnet", "sequential"}),
      key("model.batch_norm", REF(model.batch_norm)),
      key("model.cfg", REF(model.cfg)),
      choice("model.activation", REF(model.activation), {"relu", "gelu"}),
      choice("model.pool", REF(model.pool), {"none", "max", "avg"}),
      key("model.dropout", REF(model.dropout), Range::closed_open(0, 1)),
      key("model.widths", REF(model.widths), Range::closed(1, kMaxChannels)),
      key("model.blocks", REF(model.blocks), Range::closed(1, kMaxBlocks)),
      choice("model.shortcut", REF(model.shortcut), {"auto", "projection", "pad"}),
      key("model.num_classes", REF(model.num_classes), Range::closed(2, kMaxChannels)),
      key("model.sync_batch_norm", REF(model.sync_batch_norm)),
      key("model.layers", REF(model.layers)),

      choice("data.dataset", REF(data.dataset), {"cifar10", "synthetic"}),
      key("data.path", REF(data.path)),
      choice("data.format", REF(data.format), {"auto", "binary", "folder"}),
      fixed_list("data.mean", REF(data.mean), Range::any(), 3),
      fixed_list("data.std", REF(data.std), Range::above(0), 3),
      key("data.augment.crop_padding", REF(data.augment.crop_padding), Range::closed(0, kMaxCropPadding)),
      choice("data.augment.padding_mode", REF(data.augment.padding_mode), {"zero", "reflect"}),
      key("data.augment.flip", REF(data.augment.flip)),
      choice("data.augment.flip_mode", REF(data.augment.flip_mode), {"random", "alternating"}),
      key("data.augment.cutout", REF(data.augment.cutout), Range::closed(0, kMaxCutout)),
      key("data.workers", REF(data.workers), Range::closed(0, kMaxWorkers)),
      choice("data.loader", REF(data.loader), {"auto", "host", "device"}),
      key("data.train_limit", REF(data.train_limit), Range::at_least(0)),
      key("data.test_limit", REF(data.test_limit), Range::at_least(0)),
      key("data.synthetic_train_size", REF(data.synthetic_train_size), Range::closed(1, kMaxSyntheticImages)),
      key("data.synthetic_test_size", REF(data.synthetic_test_size), Range::closed(1, kMaxSyntheticImages)),
      key("data.synthetic_image_size", REF(data.synthetic_image_size), Range::closed(1, kMaxSyntheticImageSize)),

      choice("optimizer.name", REF(optimizer.name), {"sgd"}),
      key("optimizer.lr", REF(optimizer.lr), Range::above(0)),
      key("optimizer.momentum", REF(optimizer.momentum), Range::closed_open(0, 1)),
      key("optimizer.nesterov", REF(optimizer.nesterov)),
      key("optimizer.weight_decay", REF(optimizer.weight_decay), Range::at_least(0)),
      choice("optimizer.weight_decay_mode", REF(optimizer.weight_decay_mode), {"l2", "decoupled"}),
      key("optimizer.decay_norm_and_bias", REF(optimizer.decay_norm_and_bias)),
      key("optimizer.bias_lr_mult", REF(optimizer.bias_lr_mult), Range::at_least(0)),
      key("optimizer.norm_lr_mult", REF(optimizer.norm_lr_mult), Range::at_least(0)),
      key("optimizer.decay_scales_with_lr_mult", REF(optimizer.decay_scales_with_lr_mult)),

      choice("schedule.name", REF(schedule.name), {"constant", "multistep", "cosine", "linear"}),
      key("schedule.warmup_epochs", REF(schedule.warmup_epochs), Range::closed(0, kMaxEpochs)),
      key("schedule.warmup_start_factor", REF(schedule.warmup_start_factor), Range::closed(0, 1)),
      key("schedule.milestones", REF(schedule.milestones), Range::open_closed(0, kMaxEpochs)),
      key("schedule.gamma", REF(schedule.gamma), Range::open_closed(0, 1)),
      key("schedule.final_lr_factor", REF(schedule.final_lr_factor), Range::closed(0, 1)),

      choice("ema.mode", REF(ema.mode), {"none", "ema", "lookahead"}),
      key("ema.every", REF(ema.every), Range::at_least(1)),
      key("ema.start_epochs", REF(ema.start_epochs), Range::closed(0, kMaxEpochs)),
      key("ema.decay", REF(ema.decay), Range::closed_open(0, 1)),
      key("ema.decay_power", REF(ema.decay_power), Range::at_least(0)),

      key("train.epochs", REF(train.epochs), Range::open_closed(0, kMaxEpochs)),
      key("train.batch_size", REF(train.batch_size), Range::closed(1, kMaxBatchSize)),
      choice("train.backend", REF(train.backend), {"cpu", "cuda", "cuda_tf32", "cudnn", "cudnn_tf32", "auto"}),
      choice("train.precision", REF(train.precision), {"fp32", "tf32", "bf16"}),
      choice("train.conv_bn_fusion", REF(train.conv_bn_fusion), {"auto", "on", "off"}),
      key("train.seed", REF(train.seed), Range::at_least(0)),
      key("train.label_smoothing", REF(train.label_smoothing), Range::closed_open(0, 1)),
      key("train.threads", REF(train.threads), Range::closed(0, kMaxThreads)),
      key("train.eval_every", REF(train.eval_every), Range::at_least(1)),
      key("train.log_every", REF(train.log_every), Range::at_least(1)),
      key("train.checkpoint_every", REF(train.checkpoint_every), Range::at_least(0)),
      key("train.save_each_epoch", REF(train.save_each_epoch)),
      key("train.max_steps", REF(train.max_steps), Range::at_least(0)),
      choice("train.tta", REF(train.tta), {"none", "flip", "flip_translate"}),
      key("train.init_images", REF(train.init_images), Range::at_least(1)),
      choice("train.distributed", REF(train.distributed), {"auto", "off"}),
      key("train.distributed_timeout", REF(train.distributed_timeout), Range::above(0)),
      choice("train.layer_backends", REF(train.layer_backends),
             {"cpu", "cuda", "cuda_tf32", "cudnn", "cudnn_tf32", "auto"}),

      key("output.dir", REF(output.dir)),
      choice("output.plot", REF(output.plot), {"svg", "none"}),
  };
  return table;
}

#undef REF

constexpr std::string_view kSections[] = {"",         "model", "data",  "data.augment", "optimizer",
                                          "schedule", "ema",   "train", "output"};

std::string_view parent_of(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : path.substr(0, dot);
}

std::string_view last_name(std::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

// The first row of `table` whose `key` member equals `wanted`, or nullptr.
template <class Row>
const Row* find_row(const std::vector<Row>& table, std::string_view Row::*key, std::string_view wanted) {
  const auto it = std::find_if(table.begin(), table.end(), [&](const Row& row) { return row.*key == wanted; });
  return it == table.end() ? nullptr : &*it;
}

LayerKey layer_key(std::string_view name, decltype(LayerKey::member) member, Range range = Range::any(),
                   bool required = false) {
  return {name, member, range, required};
}

const std::vector<LayerType>& layer_table() {
  const LayerKey name = layer_key("name", &LayerSpec::name);
  const LayerKey out_channels =
      layer_key("out_channels", &LayerSpec::out_channels, Range::closed(1, kMaxChannels), true);
  const LayerKey kernel = layer_key("kernel", &LayerSpec::kernel, Range::closed(1, kMaxWindow));
  const LayerKey stride = layer_key("stride", &LayerSpec::stride, Range::closed(1, kMaxWindow));
  const LayerKey padding = layer_key("padding", &LayerSpec::padding, Range::closed(0, kMaxWindow));
  const LayerKey dilation = layer_key("dilation", &LayerSpec::dilation, Range::closed(1, kMaxWindow));
  const LayerKey groups = layer_key("groups", &LayerSpec::groups, Range::closed(1, kMaxChannels));
  const LayerKey bias = layer_key("bias", &LayerSpec::bias);
  const LayerKey out_features =
      layer_key("out_features", &LayerSpec::out_features, Range::closed(1, kMaxChannels), true);
  const LayerKey p = layer_key("p", &LayerSpec::p, Range::closed_open(0, 1));
  const LayerKey eps = layer_key("eps", &LayerSpec::eps, Range::above(0));
  const LayerKey momentum = layer_key("momentum", &LayerSpec::momentum, Range::closed(0, 1));
  const LayerKey freeze_scale = layer_key("freeze_scale", &LayerSpec::freeze_scale);
  const LayerKey bias_lr_mult = layer_key("bias_lr_mult", &LayerSpec::bias_lr_mult, Range::at_least(0));
  const LayerKey init = layer_key("init", &LayerSpec::init);
  const LayerKey whitening_eps = layer_key("whitening_eps", &LayerSpec::whitening_eps, Range::above(0));
  const LayerKey freeze_weight = layer_key("freeze_weight", &LayerSpec::freeze_weight);
  const LayerKey bias_train_epochs =
      layer_key("bias_train_epochs", &LayerSpec::bias_train_epochs, Range::closed(0, kMaxEpochs));
  const LayerKey factor = layer_key("factor", &LayerSpec::factor);
  // Every layer type takes `from` (Graph: the layers it reads), written right after `name`.
  static const std::vector<LayerType> table = [&] {
    std::vector<LayerType> types = {
        {"conv",
         {name, out_channels, kernel, stride, padding, dilation, groups, bias, init, whitening_eps, freeze_weight,
          bias_train_epochs}},
        {"max_pool", {name, kernel, stride, padding}},
        {"avg_pool", {name, kernel, stride, padding}},
        {"global_avg_pool", {name}},
        {"relu", {name}},
        {"gelu", {name}},
        {"batch_norm", {name, eps, momentum, freeze_scale, bias_lr_mult}},
        {"dropout", {name, p}},
        {"flatten", {name}},
        {"linear", {name, out_features, bias, freeze_weight, bias_train_epochs}},
        {"scale", {name, factor}},
        {"add", {name}},
        {"concat", {name}},
        {"identity", {name}},
    };
    for (LayerType& t : types) t.keys.insert(t.keys.begin() + 1, layer_key("from", &LayerSpec::from));
    return types;
  }();
  return table;
}

// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
// neighbours ("trian" -> "train") each cost 1; letter case is ignored.
size_t edit_distance(std::string_view a, std::string_view b) {
  auto same = [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  };
  const size_t cols = b.size() + 1;
  std::vector<size_t> d((a.size() + 1) * cols);
  for (size_t i = 0; i <= a.size(); ++i) d[i * cols] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t best = std::min({d[(i - 1) * cols + j] + 1, d[i * cols + j - 1] + 1,
                              d[(i - 1) * cols + j - 1] + (same(a[i - 1], b[j - 1]) ? 0 : 1)});
      if (i > 1 && j > 1 && same(a[i - 1], b[j - 2]) && same(a[i - 2], b[j - 1]))
        best = std::min(best, d[(i - 2) * cols + j - 2] + 1);
      d[i * cols + j] = best;
    }
  }
  return d.back();
}

}  // namespace

std::span<const Field> fields() {
  return field_table();
}

const Field* find_field(std::string_view path) {
  return find_row(field_table(), &Field::path, path);
}

bool is_open_map(const Field& field) {
  return std::holds_alternative<std::map<std::string, std::string>& (*)(Config&)>(field.ref);
}

bool is_section(std::string_view path) {
  return std::find(std::begin(kSections), std::end(kSections), path) != std::end(kSections);
}

std::vector<std::string> section_keys(std::string_view section) {
  std::vector<std::string> keys;
  auto add = [&](std::string_view name) {
    if (std::find(keys.begin(), keys.end(), name) == keys.end()) keys.emplace_back(name);
  };
  // Subsections appear where their first key does, which keeps file order.
  for (const Field& f : field_table()) {
    for (std::string_view p = f.path; !p.empty(); p = parent_of(p))
      if (parent_of(p) == section) add(last_name(p));
  }
  return keys;
}

std::span<const LayerType> layer_types() {
  return layer_table();
}

const LayerType* find_layer_type(std::string_view type) {
  return find_row(layer_table(), &LayerType::type, type);
}

bool is_pool(std::string_view type) {
  return type == "max_pool" || type == "avg_pool";
}

std::string closest_match(std::string_view key, const std::vector<std::string>& candidates) {
  // Allow one edit in short names, up to three in long ones: enough for typos, not for guesses.
  const size_t allowed = std::clamp<size_t>(key.size() / 3, 1, 3);
  std::string best;
  size_t best_distance = allowed + 1;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(key, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

std::string join(const std::vector<std::string>& items) {
  return fmt::format("{}", fmt::join(items, ", "));
}

}  // namespace convnet::config_schema
