// to_yaml: every key written in block style, and parse_config(to_yaml(c)) == c exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <tuple>

#include "core/config/config.h"

namespace convnet {
namespace {

// Field-by-field views of the structs (they have no operator==). LayerSpec.line is left out:
// it records where a layer was written, which differs between the two texts.
auto fields_of(const LayerSpec& l) {
  return std::tie(l.type, l.name, l.out_channels, l.kernel, l.stride, l.padding, l.dilation, l.groups, l.bias,
                  l.out_features, l.p, l.eps, l.momentum, l.freeze_scale, l.bias_lr_mult, l.init, l.whitening_eps,
                  l.freeze_weight, l.bias_train_epochs, l.factor);
}
auto fields_of(const ModelConfig& m) {
  return std::tie(m.name, m.batch_norm, m.cfg, m.activation, m.pool, m.dropout, m.widths, m.blocks, m.shortcut,
                  m.num_classes);
}
auto fields_of(const AugmentConfig& a) {
  return std::tie(a.crop_padding, a.padding_mode, a.flip, a.flip_mode, a.cutout);
}
auto fields_of(const DataConfig& d) {
  return std::tie(d.dataset, d.path, d.format, d.mean, d.std, d.workers, d.loader, d.train_limit, d.test_limit,
                  d.synthetic_train_size, d.synthetic_test_size, d.synthetic_image_size);
}
auto fields_of(const OptimizerConfig& o) {
  return std::tie(o.name, o.lr, o.momentum, o.nesterov, o.weight_decay, o.weight_decay_mode, o.decay_norm_and_bias,
                  o.bias_lr_mult, o.norm_lr_mult, o.decay_scales_with_lr_mult);
}
auto fields_of(const ScheduleConfig& s) {
  return std::tie(s.name, s.warmup_epochs, s.warmup_start_factor, s.milestones, s.gamma, s.final_lr_factor);
}
auto fields_of(const EmaConfig& e) {
  return std::tie(e.mode, e.every, e.start_epochs, e.decay, e.decay_power);
}
auto fields_of(const TrainConfig& t) {
  return std::tie(t.epochs, t.batch_size, t.backend, t.seed, t.label_smoothing, t.threads, t.eval_every, t.log_every,
                  t.checkpoint_every, t.save_each_epoch, t.max_steps, t.tta, t.init_images, t.layer_backends);
}
auto fields_of(const OutputConfig& o) {
  return std::tie(o.dir, o.plot);
}

void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(fields_of(a.model), fields_of(b.model));
  ASSERT_EQ(a.model.layers.size(), b.model.layers.size());
  for (size_t i = 0; i < a.model.layers.size(); ++i)
    EXPECT_EQ(fields_of(a.model.layers[i]), fields_of(b.model.layers[i])) << "layer " << i;
  EXPECT_EQ(fields_of(a.data), fields_of(b.data));
  EXPECT_EQ(fields_of(a.data.augment), fields_of(b.data.augment));
  EXPECT_EQ(fields_of(a.optimizer), fields_of(b.optimizer));
  EXPECT_EQ(fields_of(a.schedule), fields_of(b.schedule));
  EXPECT_EQ(fields_of(a.ema), fields_of(b.ema));
  EXPECT_EQ(fields_of(a.train), fields_of(b.train));
  EXPECT_EQ(fields_of(a.output), fields_of(b.output));
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(ConfigRoundTrip, DefaultConfig) {
  const Config original;
  const std::string yaml = to_yaml(original);
  const Config back = parse_config(yaml, "roundtrip.yaml");
  expect_same(back, original);
  EXPECT_EQ(back.source, "roundtrip.yaml");
}

TEST(ConfigRoundTrip, DefaultTextIsBlockStyleWithShortNumbers) {
  const std::string yaml = to_yaml(Config{});
  EXPECT_EQ(yaml.rfind("model:\n  name: vgg11\n", 0), 0u) << yaml;
  EXPECT_TRUE(has_line(yaml, "  lr: 0.1")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  weight_decay: 0.0005")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  mean: [0.4914, 0.4822, 0.4465]")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  augment:")) << yaml;
  EXPECT_TRUE(has_line(yaml, "    crop_padding: 4")) << yaml;
  EXPECT_TRUE(has_line(yaml, "    flip: true")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  milestones: []")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  backend: cpu")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  layer_backends: {}")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  dir: runs/default")) << yaml;
  EXPECT_EQ(yaml.find("source"), std::string::npos);
}

TEST(ConfigRoundTrip, EveryKeyIsWritten) {
  const std::string yaml = to_yaml(Config{});
  const char* sections[] = {"model", "data", "optimizer", "schedule", "ema", "train", "output"};
  for (const char* s : sections) EXPECT_TRUE(has_line(yaml, std::string(s) + ":")) << s;
  const char* keys[] = {"name",
                        "batch_norm",
                        "cfg",
                        "activation",
                        "pool",
                        "dropout",
                        "widths",
                        "blocks",
                        "shortcut",
                        "num_classes",
                        "layers",  // model
                        "dataset",
                        "path",
                        "format",
                        "mean",
                        "std",
                        "workers",
                        "loader",
                        "train_limit",
                        "test_limit",
                        "synthetic_train_size",
                        "synthetic_test_size",
                        "synthetic_image_size",  // data
                        "lr",
                        "momentum",
                        "nesterov",
                        "weight_decay",
                        "weight_decay_mode",
                        "decay_norm_and_bias",
                        "bias_lr_mult",
                        "norm_lr_mult",
                        "decay_scales_with_lr_mult",  // optimizer
                        "warmup_epochs",
                        "warmup_start_factor",
                        "milestones",
                        "gamma",
                        "final_lr_factor",  // schedule
                        "mode",
                        "every",
                        "start_epochs",
                        "decay",
                        "decay_power",  // ema
                        "epochs",
                        "batch_size",
                        "backend",
                        "seed",
                        "label_smoothing",
                        "threads",
                        "eval_every",
                        "log_every",
                        "checkpoint_every",
                        "save_each_epoch",
                        "max_steps",
                        "tta",
                        "init_images",  // train
                        "dir",
                        "plot"};  // output
  for (const char* k : keys) EXPECT_NE(yaml.find("\n  " + std::string(k) + ":"), std::string::npos) << k;
  const char* augment[] = {"crop_padding", "padding_mode", "flip", "flip_mode", "cutout"};
  for (const char* k : augment) EXPECT_NE(yaml.find("\n    " + std::string(k) + ":"), std::string::npos) << k;
}

// Every field away from its default, floats that need all their digits, strings that need quoting.
Config unusual_config() {
  Config c;
  c.model.name = "sequential";
  c.model.batch_norm = false;
  c.model.activation = "gelu";
  c.model.pool = "none";
  c.model.dropout = std::nextafter(0.1f, 1.0f);
  c.model.num_classes = 7;
  LayerSpec conv;
  conv.type = "conv";
  conv.name = "stem: conv";
  conv.out_channels = 24;
  conv.kernel = 5;
  conv.stride = 2;
  conv.padding = 2;
  conv.dilation = 3;
  conv.groups = 4;
  conv.bias = false;
  conv.init = "whitening";
  conv.whitening_eps = 1e-7f;
  conv.freeze_weight = true;
  conv.bias_train_epochs = 2.5f;
  LayerSpec bn;
  bn.type = "batch_norm";
  bn.eps = 1.2345678e-7f;
  bn.momentum = 1.0f / 3.0f;
  bn.freeze_scale = true;
  bn.bias_lr_mult = 0.0f;
  LayerSpec pool;
  pool.type = "max_pool";
  pool.kernel = 3;
  pool.stride = 1;  // not the kernel: must survive the "stride = kernel" default
  pool.padding = 1;
  LayerSpec avg;
  avg.type = "avg_pool";
  avg.kernel = 2;
  avg.stride = 2;
  LayerSpec drop;
  drop.type = "dropout";
  drop.p = 0.7f;
  LayerSpec linear;
  linear.type = "linear";
  linear.name = "null";
  linear.out_features = 7;
  linear.bias = false;
  linear.freeze_weight = true;
  LayerSpec scale;
  scale.type = "scale";
  scale.factor = 1.0f / 9.0f;
  for (const char* t : {"relu", "gelu", "global_avg_pool", "flatten"}) {
    LayerSpec simple;
    simple.type = t;
    c.model.layers.push_back(simple);
  }
  c.model.layers.insert(c.model.layers.begin(), {conv, bn, pool, avg, drop});
  c.model.layers.push_back(linear);
  c.model.layers.push_back(scale);

  c.data.dataset = "synthetic";
  c.data.path = " leading space/#not a comment";
  c.data.format = "folder";
  c.data.mean = {-0.0f, 1e-30f, 3.4028235e38f};
  c.data.std = {std::nextafter(1.0f, 2.0f), 0.2470f, 1e-10f};
  c.data.augment = {0, "reflect", false, "alternating", 16};
  c.data.loader = "device";
  c.data.workers = 0;
  c.data.train_limit = int64_t{1} << 40;
  c.data.test_limit = 3;
  c.data.synthetic_train_size = 5;
  c.data.synthetic_test_size = 6;
  c.data.synthetic_image_size = 9;

  c.optimizer.lr = 1.0 / 3.0;
  c.optimizer.momentum = 0.95;
  c.optimizer.nesterov = true;
  c.optimizer.weight_decay = 1.7e-300;
  c.optimizer.weight_decay_mode = "decoupled";
  c.optimizer.decay_norm_and_bias = true;
  c.optimizer.bias_lr_mult = 123456.789;
  c.optimizer.norm_lr_mult = 0.0;
  c.optimizer.decay_scales_with_lr_mult = false;

  c.ema.mode = "lookahead";
  c.ema.every = 7;
  c.ema.start_epochs = 2.5;
  c.ema.decay = 0.95 * 0.95 * 0.95;
  c.ema.decay_power = 3.0;

  c.schedule.name = "multistep";
  c.schedule.warmup_epochs = 0.1 + 0.2;
  c.schedule.warmup_start_factor = 0.0;
  c.schedule.milestones = {0.5, 1.0 / 7.0 + 2.0, 1e6};
  c.schedule.gamma = std::nextafter(1.0, 0.0);
  c.schedule.final_lr_factor = 1.0;

  c.train.epochs = 9.9;
  c.train.tta = "flip_translate";
  c.train.init_images = 123;
  c.train.batch_size = 3;
  c.train.backend = "auto";
  c.train.seed = std::numeric_limits<uint64_t>::max();
  c.train.label_smoothing = 0.05;
  c.train.threads = 11;
  c.train.eval_every = 4;
  c.train.log_every = 1;
  c.train.checkpoint_every = 17;
  c.train.save_each_epoch = false;
  c.train.max_steps = std::numeric_limits<int64_t>::max();
  c.train.layer_backends = {{"stem: conv", "cpu"}, {"fc", "cudnn"}, {"null", "auto"}};

  c.output.dir = "~";
  c.output.plot = "none";
  return c;
}

TEST(ConfigRoundTrip, UnusualConfigWithLayers) {
  const Config original = unusual_config();
  const std::string yaml = to_yaml(original);
  const Config back = parse_config(yaml, "roundtrip.yaml");
  expect_same(back, original);
  // The layer list is written one flow mapping per line, and lines point at them.
  EXPECT_TRUE(has_line(yaml, "    - {type: max_pool, kernel: 3, stride: 1, padding: 1}")) << yaml;
  EXPECT_TRUE(has_line(yaml, "  layer_backends:")) << yaml;
  EXPECT_TRUE(has_line(yaml, "    fc: cudnn")) << yaml;
  ASSERT_FALSE(back.model.layers.empty());
  EXPECT_GT(back.model.layers[0].line, 0);
  EXPECT_EQ(back.model.layers[1].line, back.model.layers[0].line + 1);
}

TEST(ConfigRoundTrip, VggConfig) {
  Config original;
  original.model.name = "vgg";
  original.model.cfg = {"32", "M", "64", "64", "M"};
  original.model.dropout = 0.5f;
  const std::string yaml = to_yaml(original);
  EXPECT_TRUE(has_line(yaml, "  cfg: [32, M, 64, 64, M]")) << yaml;
  expect_same(parse_config(yaml, "vgg.yaml"), original);
}

TEST(ConfigRoundTrip, ParsedFileSurvivesWriteAndRead) {
  const std::string text = R"(model:
  name: sequential
  layers:
    - {type: conv, out_channels: 8, padding: 1}
    - type: batch_norm
    - {type: relu}
    - {type: avg_pool}
    - {type: flatten}
    - {type: linear, out_features: 10}
optimizer:
  lr: 0.0123
schedule:
  name: linear
  warmup_epochs: 0.5
train:
  epochs: 2
  seed: 99
)";
  const Config first = parse_config(text, "a.yaml");
  const std::string yaml = to_yaml(first);
  const Config second = parse_config(yaml, "b.yaml");
  expect_same(second, first);
  EXPECT_EQ(to_yaml(second), yaml);  // writing is a fixed point once read back
  EXPECT_EQ(second.model.layers[3].kernel, 2);
  EXPECT_EQ(second.model.layers[3].stride, 2);
}

}  // namespace
}  // namespace convnet
