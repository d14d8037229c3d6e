// The run configuration: one YAML file with sections model, data, optimizer, schedule, train,
// output. Every key, its type, default and allowed range is declared in core/config/schema.cpp;
// load_config() rejects unknown keys, wrong types and out-of-range values with
// "FILE:LINE: key: what was expected, got what" as a ConfigError.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace convnet {

// One entry of model.layers (a sequential net written out layer by layer). Which fields apply
// depends on `type`; a field that does not apply to the type is an error.
struct LayerSpec {
  std::string type;  // conv | max_pool | avg_pool | global_avg_pool | relu | gelu | batch_norm | add | concat |
                     // identity | dropout | flatten | linear | scale
  std::string name;  // optional; default "<type><index>"
  int line = 0;      // line in the config file, for later error messages
  // The layers whose outputs this layer reads: names or relative indices ("-2": the layer two
  // before this one). Empty: the previous layer (the graph input for the first layer).
  std::vector<std::string> from;
  // conv
  int out_channels = 0;
  int kernel = 3;  // conv and pools (pool default 2)
  int stride = 1;  // conv default 1; pools default = kernel
  int padding = 0;
  int dilation = 1;
  int groups = 1;    // conv: grouped convolution; groups == input channels is depthwise
  bool bias = true;  // conv and linear
  // conv: kaiming_normal (fan_out, the VGG default) | pytorch (U(+-1/sqrt(fan_in)), torch's own
  // default) | pytorch_dirac (pytorch, then the first min(out, in) filters set to the identity,
  // as airbench) | whitening (data-dependent: the eigenvectors of the input's k x k patch
  // covariance scaled by 1/sqrt(eigenvalue + whitening_eps), and their negations; needs
  // out_channels == 2 * k * k * in_channels, computed from the first train.init_images images).
  std::string init = "kaiming_normal";
  float whitening_eps = 5e-4f;
  // conv and linear: keep the weight at its initial value; train the bias only during the first
  // bias_train_epochs epochs (0 = always), e.g. the airbench whitening layer's bias.
  bool freeze_weight = false;
  float bias_train_epochs = 0.0f;
  // linear
  int out_features = 0;
  // dropout
  float p = 0.5f;
  // batch_norm
  float eps = 1e-5f;
  float momentum = 0.1f;
  bool freeze_scale = false;
  float bias_lr_mult = 1.0f;
  // scale: y = factor * x
  float factor = 1.0f;
};

struct ModelConfig {
  // vgg11 | vgg13 | vgg16 | vgg19: the classic CIFAR VGGs; vgg: a VGG from `cfg`;
  // resnet18 | resnet34 | resnet20 | resnet32 | resnet44 | resnet56 | resnet110 | resnet1202: the
  // CIFAR ResNets; resnet: a ResNet from `widths` and `blocks` (models/resnet.h);
  // sequential: the `layers` list.
  std::string name = "vgg11";
  bool batch_norm = true;           // vgg*: conv -> BN -> activation
  std::vector<std::string> cfg;     // vgg: channel counts and "M" for 2x2 max-pool, e.g. [64, M, 128, M]
  std::string activation = "relu";  // vgg*, resnet*: relu | gelu
  std::string pool = "max";         // vgg*: pool after the features before the classifier: none | max | avg
  float dropout = 0.0f;             // vgg*, resnet*: dropout before the classifier
  std::vector<int> widths;          // resnet: channels per stage, e.g. [64, 128, 256, 512]; the stem has widths[0]
  std::vector<int> blocks;          // resnet: BasicBlocks per stage, e.g. [2, 2, 2, 2]
  // resnet*: the shortcut of a block that changes the shape: projection (1x1 conv + BN) | pad
  // (subsample + zero channels, parameter-free) | auto (the net's own: pad for resnet20 ...
  // resnet1202, projection for the others).
  std::string shortcut = "auto";
  int num_classes = 10;
  std::vector<LayerSpec> layers;  // sequential
  // Data-parallel runs: every batchnorm normalizes with the statistics of the whole global batch
  // (sums over the ranks, as torch.nn.SyncBatchNorm) instead of its rank's shard (DDP's default).
  bool sync_batch_norm = false;
};

struct AugmentConfig {
  int crop_padding = 4;               // random crop after padding by this many pixels; 0 = off
  std::string padding_mode = "zero";  // zero | reflect
  bool flip = true;                   // horizontal flip
  std::string flip_mode = "random";   // random (each epoch) | alternating (see FlipMode in core/base/augment_math.h)
  int cutout = 0;                     // side of a random square set to zero (after normalisation); 0 = off
};

struct DataConfig {
  std::string dataset = "cifar10";  // cifar10 | synthetic
  std::string path = "data/cifar10";
  std::string format = "auto";                            // auto | binary | folder
  std::vector<float> mean = {0.4914f, 0.4822f, 0.4465f};  // per channel, on [0, 1] pixels
  std::vector<float> std = {0.2470f, 0.2435f, 0.2616f};
  AugmentConfig augment;
  int workers = 2;  // background threads preparing batches
  // host: batches prepared on CPU threads and uploaded; device: the whole uint8 data set uploaded
  // once to the first layer's device and batches built there (Backend::augment_batch); auto:
  // device when the first layer runs on a GPU.
  std::string loader = "auto";
  int64_t train_limit = 0;  // use a class-balanced subset of N training images (0 = all)
  int64_t test_limit = 0;
  // synthetic data set: class-dependent patterns plus noise, generated from train.seed
  int64_t synthetic_train_size = 2048;
  int64_t synthetic_test_size = 512;
  int synthetic_image_size = 16;
};

struct OptimizerConfig {
  std::string name = "sgd";
  double lr = 0.1;  // peak learning rate
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  std::string weight_decay_mode = "l2";  // l2 (added to the gradient) | decoupled (param *= 1 - lr*wd)
  bool decay_norm_and_bias = false;      // apply weight decay to batchnorm parameters and biases too
  double bias_lr_mult = 1.0;             // LR multiplier for biases (and batchnorm shifts)
  double norm_lr_mult = 1.0;             // LR multiplier for batchnorm scales
  // false: a parameter whose LR is multiplied by m gets weight_decay / m, so every parameter
  // decays by the same fraction per step whatever its LR multiplier (airbench).
  bool decay_scales_with_lr_mult = true;
};

struct ScheduleConfig {
  std::string name = "cosine";  // constant | multistep | cosine | linear
  double warmup_epochs = 0;     // linear warm-up from warmup_start_factor * lr (fractional epochs allowed)
  double warmup_start_factor = 0.1;
  std::vector<double> milestones;  // multistep: epochs at which lr *= gamma
  double gamma = 0.1;
  double final_lr_factor = 0.0;  // cosine and linear end at final_lr_factor * lr
};

// Weight averaging (airbench94's schedule): the average starts as a copy of the weights at the
// first step that is a multiple of `every` in epoch start_epochs or later (until then it simply
// tracks the weights); after that, every `every` steps avg = d * avg + (1 - d) * weights with
// d = decay * (step / total_steps)^decay_power (decay_power 0: constant d). Batchnorm running
// statistics are averaged too. ema: the averaged weights are evaluated and saved as the model
// (training continues on the raw weights); lookahead: the weights are reset to the average after
// each update and at the end of every epoch and of the run. Either way the final model is the average.
struct EmaConfig {
  std::string mode = "none";  // none | ema | lookahead
  int every = 5;
  double start_epochs = 0;  // 0-based epoch from which averaging starts (fractional allowed)
  double decay = 0.99;
  double decay_power = 0.0;
};

struct TrainConfig {
  double epochs = 10;  // fractional epochs allowed: training stops after ceil(epochs * steps per epoch) steps
  int batch_size = 128;
  std::string backend = "cpu";  // cpu | cuda | cuda_tf32 | cudnn (strict fp32) | cudnn_tf32 | auto
  // Conv and linear arithmetic (core/base/precision.h): fp32 | tf32 | bf16. The *_tf32 backends
  // compute tf32 unless bf16 is asked for (which they refuse).
  std::string precision = "fp32";
  // conv -> batch_norm pairs whose batchnorm takes its statistics from the conv (core/train/
  // conv_bn_fusion.h): auto (where the backend is faster so: cuda in tf32 and bf16) | on | off.
  std::string conv_bn_fusion = "auto";
  uint64_t seed = 0;
  double label_smoothing = 0.0;
  int threads = 0;              // CPU backend threads; 0 = all cores
  int eval_every = 1;           // evaluate on the test set every N epochs (and after the last)
  int log_every = 50;           // steps between progress lines when stdout is not a terminal
  int checkpoint_every = 0;     // also write last.safetensors every N steps (0 = only at epoch ends)
  bool save_each_epoch = true;  // write last.safetensors at every epoch end (false: only at the end of the run)
  int64_t max_steps = 0;        // stop after this many steps in all (0 = no limit); for tests
  // Test-time augmentation of every test evaluation: none | flip (2 views: the image and its
  // mirror) | flip_translate (6 views, airbench: those two at weight 1/4 each, plus both flips of
  // the image shifted by one pixel up-left and down-right, reflect-padded, at 1/8 each).
  std::string tta = "none";
  int64_t init_images = 5000;  // images (first of the training set, unaugmented) for data-dependent init
  // Per-layer backend overrides, layer name -> backend, e.g. {conv1: cpu}; the rest use `backend`.
  std::map<std::string, std::string> layer_backends;
  // Data parallelism (core/dist): auto: data-parallel over the processes of an MPI launch (mpirun,
  // srun) when there is more than one; off: every process trains alone.
  std::string distributed = "auto";
  // Seconds a rank waits for the others in one collective before it stops the job (a peer died or hangs).
  double distributed_timeout = 300;
};

struct OutputConfig {
  std::string dir = "runs/default";
  std::string plot = "svg";  // svg | none
};

struct Config {
  ModelConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  EmaConfig ema;
  TrainConfig train;
  OutputConfig output;
  std::string source;  // the file it was read from ("" when built in code)
};

// The largest config file load_config() reads; a real one is a few kilobytes.
inline constexpr uint64_t kMaxConfigBytes = uint64_t{1} << 20;

// Reads `path` (a regular file of at most kMaxConfigBytes: a FIFO, a device or a directory is
// refused), applies `overrides` ("a.b=value", parsed as YAML scalars or flow sequences,
// e.g. "model.cfg=[64,M,128,M]") and validates. Throws ConfigError on any problem.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Same, from YAML text; `source_name` is used in messages.
Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides = {});
// The effective configuration as YAML, every key present; parse_config(to_yaml(c)) == c.
std::string to_yaml(const Config& config);

}  // namespace convnet
