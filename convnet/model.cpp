#include "convnet/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "convnet/backends.h"
#include "convnet/model_graph.h"
#include "core/base/log.h"
#include "core/config/config.h"
#include "core/train/checkpoint.h"
#include "core/train/graph.h"
#include "core/train/tta_logits.h"
#include "datasets/image_resize.h"

namespace convnet {

std::vector<ClassScore> Prediction::top(int k) const {
  if (k < 1) throw ConfigError(fmt::format("Prediction::top: k must be positive, got {}", k));
  std::vector<ClassScore> ranked;
  for (size_t c = 0; c < probabilities.size(); ++c) ranked.push_back({static_cast<int>(c), probabilities[c]});
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const ClassScore& a, const ClassScore& b) { return a.probability > b.probability; });
  ranked.resize(std::min(ranked.size(), static_cast<size_t>(k)));
  return ranked;
}

// Declared in this order so that the graph (which refers to the backends) and the TTA (which refers
// to the graph) are destroyed first.
struct Model::Impl {
  Impl(const Config& config, const Shape& example, Tta tta)
      : backends(config.train), data(config.data), input(example) {
    build_graph(config, input, backends, graph);
    logits_of = std::make_unique<TtaLogits>(graph, tta);
  }
  Backends backends;
  DataConfig data;
  Shape input;  // {H, W, 3}
  Graph graph;
  std::unique_ptr<TtaLogits> logits_of;
  std::vector<std::string> names;
  int batch_size = 64;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& checkpoint, const LoadOptions& options) {
  configure_logging_unless_set("warn");
  if (options.batch_size < 1)
    throw ConfigError(fmt::format("LoadOptions::batch_size must be positive, got {}", options.batch_size));
  const Tta tta = parse_tta(options.tta.empty() ? "none" : options.tta, "LoadOptions::tta");
  const CheckpointSummary summary = read_checkpoint_summary(checkpoint);
  std::vector<std::string> overrides;
  if (!options.backend.empty()) overrides.push_back("train.backend=" + options.backend);
  const Config config = parse_config(summary.state.config_yaml, checkpoint + " (convnet.config)", overrides);
  const Shape input = model_input_shape(summary, config.data);
  if (input.size() != 3 || input[2] != 3)
    throw ConfigError(fmt::format("{}: the model reads {} inputs, not RGB images, so it cannot classify images",
                                  checkpoint, shape_str(input)));
  auto impl = std::make_unique<Impl>(config, input, tta);
  load_checkpoint(checkpoint, impl->graph, nullptr);
  const int64_t classes = impl->graph.output_shape()[0];
  impl->names = summary.state.class_names;
  if (impl->names.size() != static_cast<size_t>(classes)) {  // not recorded (older checkpoints)
    impl->names.clear();
    for (int64_t c = 0; c < classes; ++c) impl->names.push_back(fmt::format("class{}", c));
  }
  impl->batch_size = options.batch_size;
  return Model(std::move(impl));
}

const std::vector<std::string>& Model::class_names() const {
  return impl_->names;
}

InputShape Model::input_shape() const {
  return {static_cast<int>(impl_->input[0]), static_cast<int>(impl_->input[1]), static_cast<int>(impl_->input[2])};
}

namespace {

// `image` as the model's normalised input [H, W, 3] at `out`.
void prepare(const DecodedImage& image, size_t position, const Shape& input, const DataConfig& data, float* out) {
  if (image.height < 1 || image.width < 1)
    throw Error(
        fmt::format("image {}: {}x{} pixels; an image needs at least one", position, image.width, image.height));
  const size_t expected = static_cast<size_t>(image.height) * static_cast<size_t>(image.width) * 3;
  if (image.rgb.size() != expected)
    throw Error(fmt::format("image {}: {}x{} RGB pixels need {} bytes, but rgb holds {}", position, image.width,
                            image.height, expected, image.rgb.size()));
  const std::vector<float> pixels = resize_rgb(image, static_cast<int>(input[0]), static_cast<int>(input[1]));
  for (size_t i = 0; i < pixels.size(); ++i) {
    const size_t c = i % 3;
    out[i] = (pixels[i] / 255.0f - data.mean[c]) / data.std[c];
  }
}

// Softmax of one row of logits (in double, shifted by the row's peak so exp cannot overflow).
std::vector<double> softmax(const float* logits, size_t classes) {
  const float peak = *std::max_element(logits, logits + classes);
  std::vector<double> p(classes);
  double total = 0;
  for (size_t c = 0; c < classes; ++c) total += p[c] = std::exp(double(logits[c]) - peak);
  for (double& v : p) v /= total;
  return p;
}

}  // namespace

std::vector<Prediction> Model::predict(const std::vector<DecodedImage>& images) {
  Impl& m = *impl_;
  const int64_t pixels = shape_numel(m.input);
  const size_t classes = m.names.size();
  std::vector<Prediction> answers;
  answers.reserve(images.size());
  for (size_t first = 0; first < images.size(); first += static_cast<size_t>(m.batch_size)) {
    const size_t last = std::min(images.size(), first + static_cast<size_t>(m.batch_size));
    Tensor batch({static_cast<int64_t>(last - first), m.input[0], m.input[1], m.input[2]});
    for (size_t i = first; i < last; ++i)
      prepare(images[i], i, m.input, m.data, batch.f32() + static_cast<int64_t>(i - first) * pixels);
    const Tensor& logits = (*m.logits_of)(batch);
    Tensor host(logits.shape());
    m.graph.output_backend().copy(host, logits);
    for (size_t i = first; i < last; ++i) answers.push_back({softmax(host.f32() + (i - first) * classes, classes)});
  }
  return answers;
}

Prediction Model::predict(const DecodedImage& image) {
  return predict(std::vector<DecodedImage>{image}).front();
}

}  // namespace convnet
