// Reading valid configurations: every section, defaults, model.cfg and model.layers, overrides,
// CRLF files and load_config on a real file.
#include <gtest/gtest.h>

#include <limits>
#include <map>

#include "core/base/error.h"
#include "core/config/config.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

// Every section with values that differ from the defaults.
const char* kFullConfig = R"(# a complete configuration
model:
  name: vgg16
  batch_norm: false
  activation: gelu
  pool: avg
  dropout: 0.25
  num_classes: 100
data:
  dataset: synthetic
  path: /datasets/cifar
  format: binary
  mean: [0.5, 0.25, 0.125]
  std: [0.2, 0.3, 0.4]
  augment:
    crop_padding: 2
    padding_mode: reflect
    flip: false
    cutout: 8
  workers: 0
  train_limit: 1000
  test_limit: 200
  synthetic_train_size: 64
  synthetic_test_size: 32
  synthetic_image_size: 8
optimizer:
  name: sgd
  lr: 0.05
  momentum: 0.8
  nesterov: true
  weight_decay: 1e-4
  weight_decay_mode: decoupled
  decay_norm_and_bias: true
  bias_lr_mult: 2
  norm_lr_mult: 0.5
schedule:
  name: multistep
  warmup_epochs: 1.5
  warmup_start_factor: 0.01
  milestones: [30, 60.5, 90]
  gamma: 0.2
  final_lr_factor: 0.05
train:
  epochs: 120
  batch_size: 256
  backend: cudnn
  seed: 42
  label_smoothing: 0.1
  threads: 3
  eval_every: 5
  log_every: 10
  checkpoint_every: 100
  max_steps: 5000
output:
  dir: runs/vgg16
  plot: none
)";

void expect_full_config(const Config& c) {
  EXPECT_EQ(c.model.name, "vgg16");
  EXPECT_FALSE(c.model.batch_norm);
  EXPECT_TRUE(c.model.cfg.empty());
  EXPECT_EQ(c.model.activation, "gelu");
  EXPECT_EQ(c.model.pool, "avg");
  EXPECT_EQ(c.model.dropout, 0.25f);
  EXPECT_EQ(c.model.num_classes, 100);
  EXPECT_TRUE(c.model.layers.empty());

  EXPECT_EQ(c.data.dataset, "synthetic");
  EXPECT_EQ(c.data.path, "/datasets/cifar");
  EXPECT_EQ(c.data.format, "binary");
  EXPECT_EQ(c.data.mean, (std::vector<float>{0.5f, 0.25f, 0.125f}));
  EXPECT_EQ(c.data.std, (std::vector<float>{0.2f, 0.3f, 0.4f}));
  EXPECT_EQ(c.data.augment.crop_padding, 2);
  EXPECT_EQ(c.data.augment.padding_mode, "reflect");
  EXPECT_FALSE(c.data.augment.flip);
  EXPECT_EQ(c.data.augment.cutout, 8);
  EXPECT_EQ(c.data.workers, 0);
  EXPECT_EQ(c.data.train_limit, 1000);
  EXPECT_EQ(c.data.test_limit, 200);
  EXPECT_EQ(c.data.synthetic_train_size, 64);
  EXPECT_EQ(c.data.synthetic_test_size, 32);
  EXPECT_EQ(c.data.synthetic_image_size, 8);

  EXPECT_EQ(c.optimizer.name, "sgd");
  EXPECT_EQ(c.optimizer.lr, 0.05);
  EXPECT_EQ(c.optimizer.momentum, 0.8);
  EXPECT_TRUE(c.optimizer.nesterov);
  EXPECT_EQ(c.optimizer.weight_decay, 1e-4);
  EXPECT_EQ(c.optimizer.weight_decay_mode, "decoupled");
  EXPECT_TRUE(c.optimizer.decay_norm_and_bias);
  EXPECT_EQ(c.optimizer.bias_lr_mult, 2.0);
  EXPECT_EQ(c.optimizer.norm_lr_mult, 0.5);

  EXPECT_EQ(c.schedule.name, "multistep");
  EXPECT_EQ(c.schedule.warmup_epochs, 1.5);
  EXPECT_EQ(c.schedule.warmup_start_factor, 0.01);
  EXPECT_EQ(c.schedule.milestones, (std::vector<double>{30, 60.5, 90}));
  EXPECT_EQ(c.schedule.gamma, 0.2);
  EXPECT_EQ(c.schedule.final_lr_factor, 0.05);

  EXPECT_EQ(c.train.epochs, 120);
  EXPECT_EQ(c.train.batch_size, 256);
  EXPECT_EQ(c.train.backend, "cudnn");
  EXPECT_EQ(c.train.seed, 42u);
  EXPECT_EQ(c.train.label_smoothing, 0.1);
  EXPECT_EQ(c.train.threads, 3);
  EXPECT_EQ(c.train.eval_every, 5);
  EXPECT_EQ(c.train.log_every, 10);
  EXPECT_EQ(c.train.checkpoint_every, 100);
  EXPECT_EQ(c.train.max_steps, 5000);

  EXPECT_EQ(c.output.dir, "runs/vgg16");
  EXPECT_EQ(c.output.plot, "none");
}

TEST(ConfigLoad, FullConfigFillsEverySection) {
  const Config c = parse_config(kFullConfig, "full.yaml");
  expect_full_config(c);
  EXPECT_EQ(c.source, "full.yaml");
}

TEST(ConfigLoad, CrlfLineEndingsReadTheSame) {
  std::string crlf;
  for (const char* p = kFullConfig; *p; ++p) {
    if (*p == '\n') crlf += '\r';
    crlf += *p;
  }
  ASSERT_NE(crlf.find("\r\n"), std::string::npos);
  expect_full_config(parse_config(crlf, "crlf.yaml"));
}

TEST(ConfigLoad, MissingKeysTakeTheStructDefaults) {
  const Config c = parse_config("train:\n  epochs: 3\n", "partial.yaml");
  const Config d;
  EXPECT_EQ(c.train.epochs, 3);
  EXPECT_EQ(c.train.batch_size, d.train.batch_size);
  EXPECT_EQ(c.train.backend, d.train.backend);
  EXPECT_EQ(c.train.log_every, d.train.log_every);
  EXPECT_EQ(c.model.name, d.model.name);
  EXPECT_EQ(c.model.num_classes, d.model.num_classes);
  EXPECT_EQ(c.data.path, d.data.path);
  EXPECT_EQ(c.data.mean, d.data.mean);
  EXPECT_EQ(c.data.std, d.data.std);
  EXPECT_EQ(c.data.augment.crop_padding, d.data.augment.crop_padding);
  EXPECT_EQ(c.data.augment.flip, d.data.augment.flip);
  EXPECT_EQ(c.optimizer.lr, d.optimizer.lr);
  EXPECT_EQ(c.optimizer.weight_decay, d.optimizer.weight_decay);
  EXPECT_EQ(c.schedule.name, d.schedule.name);
  EXPECT_EQ(c.output.dir, d.output.dir);
}

TEST(ConfigLoad, EmptySectionsAndPartialNestedSections) {
  const Config c = parse_config("model:\ndata:\n  augment:\n    cutout: 6\noptimizer: {}\n", "s.yaml");
  EXPECT_EQ(c.model.name, "vgg11");
  EXPECT_EQ(c.data.augment.cutout, 6);
  EXPECT_EQ(c.data.augment.crop_padding, 4);  // sibling keeps its default
  EXPECT_EQ(c.optimizer.lr, 0.1);
}

TEST(ConfigLoad, VggCfgListOfCountsAndM) {
  const Config c = parse_config("model:\n  name: vgg\n  cfg: [64, M, 128, \"M\", +256]\n", "vgg.yaml");
  EXPECT_EQ(c.model.cfg, (std::vector<std::string>{"64", "M", "128", "M", "256"}));
}

TEST(ConfigLoad, SequentialLayersWithLinesAndPoolDefaults) {
  const std::string yaml = R"(model:
  name: sequential
  layers:
    - type: conv
      out_channels: 16
    - {type: conv, name: c2, out_channels: 32, kernel: 5, stride: 2, padding: 2, dilation: 2, groups: 4, bias: false}
    - type: batch_norm
      eps: 0.001
      momentum: 0.2
      freeze_scale: true
      bias_lr_mult: 0.5
    - {type: gelu}
    - {type: max_pool}
    - {type: avg_pool, kernel: 3}
    - {type: max_pool, kernel: 3, stride: 1, padding: 1}
    - {type: dropout, p: 0.3}
    - {type: global_avg_pool}
    - {type: flatten}
    - type: linear
      out_features: 10
      bias: false
    - {type: relu, name: act}
)";
  const Config c = parse_config(yaml, "seq.yaml");
  const std::vector<LayerSpec>& l = c.model.layers;
  ASSERT_EQ(l.size(), 12u);
  const std::vector<std::string> types = {"conv",     "conv",    "batch_norm",      "gelu",    "max_pool", "avg_pool",
                                          "max_pool", "dropout", "global_avg_pool", "flatten", "linear",   "relu"};
  const std::vector<int> lines = {4, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19, 22};
  for (size_t i = 0; i < l.size(); ++i) {
    EXPECT_EQ(l[i].type, types[i]) << i;
    EXPECT_EQ(l[i].line, lines[i]) << i;
  }
  // conv defaults from the struct, then an explicit conv
  EXPECT_EQ(l[0].out_channels, 16);
  EXPECT_EQ(l[0].kernel, 3);
  EXPECT_EQ(l[0].stride, 1);
  EXPECT_EQ(l[0].padding, 0);
  EXPECT_EQ(l[0].dilation, 1);
  EXPECT_EQ(l[0].groups, 1);
  EXPECT_TRUE(l[0].bias);
  EXPECT_EQ(l[0].name, "");
  EXPECT_EQ(l[1].name, "c2");
  EXPECT_EQ(l[1].out_channels, 32);
  EXPECT_EQ(l[1].kernel, 5);
  EXPECT_EQ(l[1].stride, 2);
  EXPECT_EQ(l[1].padding, 2);
  EXPECT_EQ(l[1].dilation, 2);
  EXPECT_EQ(l[1].groups, 4);
  EXPECT_FALSE(l[1].bias);
  EXPECT_EQ(l[2].eps, 0.001f);
  EXPECT_EQ(l[2].momentum, 0.2f);
  EXPECT_TRUE(l[2].freeze_scale);
  EXPECT_EQ(l[2].bias_lr_mult, 0.5f);
  // pools: kernel 2 by default, stride follows the kernel unless given
  EXPECT_EQ(l[4].kernel, 2);
  EXPECT_EQ(l[4].stride, 2);
  EXPECT_EQ(l[5].kernel, 3);
  EXPECT_EQ(l[5].stride, 3);
  EXPECT_EQ(l[6].kernel, 3);
  EXPECT_EQ(l[6].stride, 1);
  EXPECT_EQ(l[6].padding, 1);
  EXPECT_EQ(l[7].p, 0.3f);
  EXPECT_EQ(l[10].out_features, 10);
  EXPECT_FALSE(l[10].bias);
  EXPECT_EQ(l[11].name, "act");
}

TEST(ConfigLoad, LargeIntegersAndWholeDecimals) {
  const Config c = parse_config(
      "train:\n  seed: 18446744073709551615\n  max_steps: 9000000000\ndata:\n  train_limit: 1e4\n  workers: 3.0\n",
      "big.yaml");
  EXPECT_EQ(c.train.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.train.max_steps, int64_t{9000000000});
  EXPECT_EQ(c.data.train_limit, 10000);
  EXPECT_EQ(c.data.workers, 3);
}

TEST(ConfigLoad, BooleanSpellingsAndQuotedNumbers) {
  const Config c = parse_config(
      "optimizer:\n  nesterov: True\n  lr: \"0.02\"\n  decay_norm_and_bias: FALSE\ndata:\n  augment:\n    flip: "
      "false\n",
      "b.yaml");
  EXPECT_TRUE(c.optimizer.nesterov);
  EXPECT_FALSE(c.optimizer.decay_norm_and_bias);
  EXPECT_FALSE(c.data.augment.flip);
  EXPECT_EQ(c.optimizer.lr, 0.02);
}

TEST(ConfigLoad, RangeEdgesAreAccepted) {
  const Config c = parse_config(R"(model:
  dropout: 0
  num_classes: 2
optimizer:
  momentum: 0
  weight_decay: 0
schedule:
  warmup_start_factor: 1
  gamma: 1
  final_lr_factor: 1
train:
  epochs: 1
  threads: 0
  label_smoothing: 0
)",
                                "edges.yaml");
  EXPECT_EQ(c.model.num_classes, 2);
  EXPECT_EQ(c.schedule.gamma, 1.0);
  EXPECT_EQ(c.schedule.warmup_start_factor, 1.0);
  EXPECT_EQ(c.train.epochs, 1);
}

TEST(ConfigLoad, LayerBackendsMapLayerNamesToBackends) {
  const Config c =
      parse_config("train:\n  backend: cudnn\n  layer_backends:\n    conv1: cpu\n    fc: cuda\n", "lb.yaml");
  EXPECT_EQ(c.train.backend, "cudnn");
  EXPECT_EQ(c.train.layer_backends, (std::map<std::string, std::string>{{"conv1", "cpu"}, {"fc", "cuda"}}));
  EXPECT_TRUE(parse_config("train: {}\n", "lb.yaml").train.layer_backends.empty());
}

TEST(ConfigOverrides, LayerBackendsOneEntryOrTheWholeMap) {
  const Config one = parse_config("train:\n  layer_backends: {a: cpu}\n", "lb.yaml", {"train.layer_backends.b=cudnn"});
  EXPECT_EQ(one.train.layer_backends, (std::map<std::string, std::string>{{"a", "cpu"}, {"b", "cudnn"}}));
  const Config fresh = parse_config("model: {}\n", "lb.yaml", {"train.layer_backends.b=cuda"});
  EXPECT_EQ(fresh.train.layer_backends, (std::map<std::string, std::string>{{"b", "cuda"}}));
  const Config whole =
      parse_config("train:\n  layer_backends: {a: cpu}\n", "lb.yaml", {"train.layer_backends={x: auto, y: cpu}"});
  EXPECT_EQ(whole.train.layer_backends, (std::map<std::string, std::string>{{"x", "auto"}, {"y", "cpu"}}));
}

TEST(ConfigOverrides, ScalarsReplaceFileValues) {
  const Config c = parse_config(kFullConfig, "full.yaml",
                                {"optimizer.lr=0.5", "data.augment.flip=true", "train.backend=cpu", "train.seed=7"});
  EXPECT_EQ(c.optimizer.lr, 0.5);
  EXPECT_TRUE(c.data.augment.flip);
  EXPECT_EQ(c.train.backend, "cpu");
  EXPECT_EQ(c.train.seed, 7u);
  EXPECT_EQ(c.train.epochs, 120);  // untouched keys keep the file's value
}

TEST(ConfigOverrides, ListsAreParsedAsYaml) {
  const Config c = parse_config("model:\n  name: vgg\n  cfg: [8, M]\n", "v.yaml",
                                {"model.cfg=[64, M, 128,M]", "data.mean=[0,0.5,1]"});
  EXPECT_EQ(c.model.cfg, (std::vector<std::string>{"64", "M", "128", "M"}));
  EXPECT_EQ(c.data.mean, (std::vector<float>{0.0f, 0.5f, 1.0f}));
}

TEST(ConfigOverrides, NewKeysAndNewSectionsAreAdded) {
  const Config c = parse_config("train:\n  epochs: 4\n", "n.yaml",
                                {"train.batch_size=16", "schedule.gamma=0.5", "data.augment.cutout=12"});
  EXPECT_EQ(c.train.epochs, 4);
  EXPECT_EQ(c.train.batch_size, 16);
  EXPECT_EQ(c.schedule.gamma, 0.5);
  EXPECT_EQ(c.data.augment.cutout, 12);
  EXPECT_EQ(c.data.augment.crop_padding, 4);
}

TEST(ConfigOverrides, LaterOverridesWinAndValuesMayContainEquals) {
  const Config c =
      parse_config("train:\n  epochs: 4\n", "n.yaml", {"train.epochs=5", "train.epochs=6", "output.dir=runs/a=b"});
  EXPECT_EQ(c.train.epochs, 6);
  EXPECT_EQ(c.output.dir, "runs/a=b");
}

TEST(ConfigOverrides, SwitchModelToVggWithCfg) {
  const Config c = parse_config(kFullConfig, "full.yaml", {"model.name=vgg", "model.cfg=[16, M]"});
  EXPECT_EQ(c.model.name, "vgg");
  EXPECT_EQ(c.model.cfg, (std::vector<std::string>{"16", "M"}));
}

TEST(ConfigOverrides, WholeLayersListFromOverride) {
  const Config c = parse_config("model:\n  name: sequential\n  layers: [{type: flatten}]\n", "l.yaml",
                                {"model.layers=[{type: conv, out_channels: 4}, {type: avg_pool, kernel: 4}]"});
  ASSERT_EQ(c.model.layers.size(), 2u);
  EXPECT_EQ(c.model.layers[0].out_channels, 4);
  EXPECT_EQ(c.model.layers[1].stride, 4);
  EXPECT_EQ(c.model.layers[0].line, 0);  // not from the file
}

TEST(ConfigLoadFile, ReadsAFileAndRecordsTheSource) {
  testing::TempDir dir;
  const std::string path = dir.file("run.yaml");
  testing::write_file(path, kFullConfig);
  const Config c = load_config(path, {"train.epochs=2"});
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.train.epochs, 2);
  EXPECT_EQ(c.model.name, "vgg16");
}

TEST(ConfigLoadFile, ErrorsNameTheFilePath) {
  testing::TempDir dir;
  const std::string path = dir.file("bad.yaml");
  testing::write_file(path, "train:\n  epochs: 0\n");
  try {
    load_config(path);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":2: train.epochs: expected a number in (0, 1000000], got 0");
  }
}

TEST(ConfigLoadFile, MissingFile) {
  try {
    load_config("definitely/not/here/x.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot open config file 'definitely/not/here/x.yaml': No such file or directory");
  }
}

}  // namespace
}  // namespace convnet
