#include "core/train/gradient_reducer.h"

#include <algorithm>
#include <cstring>

#include "core/base/error.h"

namespace convnet {

GradientReducer::GradientReducer(Graph& graph, ReplicaGroup& group, size_t bucket_bytes)
    : graph_(graph), group_(group) {
  Bucket bucket;
  size_t floats = 0;
  auto close = [&] {
    bucket.buffer.resize(floats);
    buckets_.push_back(std::move(bucket));
    bucket = Bucket();
    floats = 0;
  };
  for (size_t i = graph.size(); i-- > 0;) {
    for (Parameter* p : graph.layer(i).parameters()) {
      if (p->frozen) continue;
      CONVNET_CHECK(p->grad.defined() && p->grad.dtype() == DType::f32, "{}.{}: expected an f32 gradient",
                    graph.module(i), p->name);
      Backend& backend = graph.layer_backend(i);
      Entry entry{p, &backend, floats, p->grad.is_cpu() ? Tensor() : Tensor(p->grad.shape())};
      bucket.entries.push_back(std::move(entry));
      bucket.first_layer = i;
      floats += static_cast<size_t>(p->grad.numel());
    }
    if (floats > 0 && floats * sizeof(float) >= bucket_bytes) close();
  }
  if (floats > 0) close();
  graph_.set_backward_hook([this](size_t layer) { layer_done(layer); });
}

GradientReducer::~GradientReducer() {
  graph_.set_backward_hook({});
}

size_t GradientReducer::bytes() const {
  size_t total = 0;
  for (const Bucket& b : buckets_) total += b.buffer.size() * sizeof(float);
  return total;
}

void GradientReducer::start(Bucket& bucket) {
  for (Entry& e : bucket.entries) {
    const Tensor* host = &e.parameter->grad;
    if (e.staging.defined()) {
      e.backend->copy(e.staging, e.parameter->grad);  // a download: waits for this gradient
      host = &e.staging;
    }
    std::memcpy(bucket.buffer.data() + e.offset, host->f32(), host->bytes());
  }
  bucket.pending = group_.start_sum(bucket.buffer);
}

void GradientReducer::layer_done(size_t layer) {
  for (; next_ < buckets_.size() && buckets_[next_].first_layer == layer; ++next_) start(buckets_[next_]);
  for (size_t b = 0; b < next_; ++b) buckets_[b].pending->progress();
}

void GradientReducer::write_back(Bucket& bucket) {
  bucket.pending->wait();
  bucket.pending.reset();
  const float scale = 1.0f / static_cast<float>(group_.size());
  for (float& v : bucket.buffer) v *= scale;
  for (Entry& e : bucket.entries) {
    Tensor& dst = e.staging.defined() ? e.staging : e.parameter->grad;
    std::memcpy(dst.f32(), bucket.buffer.data() + e.offset, dst.bytes());
    if (e.staging.defined()) e.backend->copy(e.parameter->grad, e.staging);
  }
}

void GradientReducer::finish() {
  CONVNET_CHECK(next_ == buckets_.size(), "GradientReducer: {} of {} buckets started (backward incomplete?)", next_,
                buckets_.size());
  for (Bucket& b : buckets_) write_back(b);
  next_ = 0;
}

}  // namespace convnet
