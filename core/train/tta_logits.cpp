#include "core/train/tta_logits.h"

namespace convnet {

namespace {

void ensure(Tensor& t, Backend& b, const Shape& shape) {
  if (!t.defined() || t.shape() != shape) t = b.empty(shape);
}

}  // namespace

const Tensor& TtaLogits::operator()(const Tensor& images) {
  if (views_.size() == 1) return graph_.forward(images, Mode::eval);
  // The views are made where the first layer reads its input.
  Backend& input_backend = graph_.layer_backend(0);
  Backend& backend = graph_.output_backend();
  const Tensor* source = &images;
  if (images.device() != input_backend.device()) {
    ensure(staged_, input_backend, images.shape());
    input_backend.copy(staged_, images);
    source = &staged_;
  }
  ensure(view_images_, input_backend, source->shape());
  for (size_t v = 0; v < views_.size(); ++v) {
    const ImageView& view = views_[v].view;
    const bool identity = view.shift_y == 0 && view.shift_x == 0 && !view.flip;
    if (!identity) input_backend.image_view(*source, view_images_, view);
    const Tensor& out = graph_.forward(identity ? *source : view_images_, Mode::eval);
    ensure(mean_logits_, backend, out.shape());
    backend.axpby(static_cast<float>(views_[v].weight), out, v == 0 ? 0.0f : 1.0f, mean_logits_);
  }
  return mean_logits_;
}

}  // namespace convnet
