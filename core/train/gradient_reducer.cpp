#include "core/train/gradient_reducer.h"

#include <algorithm>
#include <cstring>

#include "core/base/error.h"

namespace convnet {

GradientReducer::GradientReducer(Graph& graph, ReplicaGroup& group, size_t bucket_bytes)
    : graph_(graph), group_(group) {
  add_buckets(graph, bucket_bytes);
  graph_.set_backward_hook([this](size_t layer) { layer_done(layer); });
}

std::vector<GradientBucketPlan> plan_gradient_buckets(Graph& graph, size_t bucket_bytes,
                                                      const std::function<bool(const Tensor&)>& on_device) {
  std::vector<GradientBucketPlan> plan;
  GradientBucketPlan bucket;
  auto close = [&] {
    if (!bucket.parameters.empty()) plan.push_back(std::move(bucket));
    bucket = GradientBucketPlan();
  };
  for (size_t i = graph.size(); i-- > 0;) {
    for (Parameter* p : graph.layer(i).parameters()) {
      if (p->frozen) continue;
      CONVNET_CHECK(p->grad.defined() && p->grad.dtype() == DType::f32, "{}.{}: expected an f32 gradient",
                    graph.module(i), p->name);
      const bool device = on_device(p->grad);
      if (device != bucket.on_device) close();
      bucket.on_device = device;
      bucket.parameters.emplace_back(i, p);
      bucket.first_layer = i;
      bucket.floats += static_cast<size_t>(p->grad.numel());
    }
    if (bucket.floats * sizeof(float) >= bucket_bytes) close();
  }
  close();
  return plan;
}

void GradientReducer::add_buckets(Graph& graph, size_t bucket_bytes) {
  DeviceCollectives* transport = group_.device_collectives();
  const auto served = [&](const Tensor& t) { return transport != nullptr && transport->serves(t); };
  for (GradientBucketPlan& plan : plan_gradient_buckets(graph, bucket_bytes, served)) {
    Bucket bucket;
    bucket.first_layer = plan.first_layer;
    bucket.floats = plan.floats;
    std::vector<Tensor*> gradients;
    size_t offset = 0;
    for (auto [layer, p] : plan.parameters) {
      const bool staged = !plan.on_device && !p->grad.is_cpu();
      bucket.entries.push_back(
          Entry{p, &graph.layer_backend(layer), offset, staged ? Tensor(p->grad.shape()) : Tensor()});
      gradients.push_back(&p->grad);
      offset += static_cast<size_t>(p->grad.numel());
    }
    if (plan.on_device)
      bucket.device = transport->make_bucket(std::move(gradients));
    else
      bucket.buffer.resize(bucket.floats);
    buckets_.push_back(std::move(bucket));
  }
}

GradientReducer::~GradientReducer() {
  graph_.set_backward_hook({});
}

size_t GradientReducer::bytes() const {
  size_t total = 0;
  for (const Bucket& b : buckets_) total += b.floats * sizeof(float);
  return total;
}

size_t GradientReducer::num_device_buckets() const {
  return static_cast<size_t>(
      std::count_if(buckets_.begin(), buckets_.end(), [](const Bucket& b) { return b.device != nullptr; }));
}

void GradientReducer::start(Bucket& bucket) {
  if (bucket.device) {
    bucket.device->start();
    return;
  }
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
  for (size_t b = 0; b < next_; ++b)
    if (buckets_[b].pending) buckets_[b].pending->progress();
}

void GradientReducer::write_back(Bucket& bucket) {
  if (bucket.device) {
    bucket.device->finish();
    return;
  }
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
