// BatchNorm2d's synchronized path (BatchNorm2d::set_replica_group): per-rank pieces on the backend,
// the cross-rank combination in double on the host. The [C] vectors cross to the host and back
// because the group sums host memory; they are small next to the activations.
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "core/layers/batch_norm.h"
#include "core/layers/layer_util.h"

namespace convnet {

namespace {

std::vector<double> download(Backend& b, const Tensor& t) {
  Tensor host(t.shape());
  b.copy(host, t);
  return {host.f32(), host.f32() + host.numel()};
}

void upload(Backend& b, const std::vector<double>& values, Tensor& t) {
  Tensor host(t.shape());
  for (size_t i = 0; i < values.size(); ++i) host.f32()[i] = static_cast<float>(values[i]);
  layer_util::upload(b, t, host);
}

// Every rank's rows at once: count, mean and M2 per channel.
struct GlobalMoments {
  double rows = 0;
  std::vector<double> mean, m2;
};

// Chan et al.'s parallel combination of the ranks' (n_r, mean_r, M2_r): the first sum gives n and
// sum n_r mean_r, the second the M2_r shifted to the global mean. Throws (on every rank alike, n
// being the same everywhere) when fewer than two rows exist in all.
GlobalMoments combine_moments(ReplicaGroup& group, const std::string& layer, double rows,
                              const std::vector<double>& mean, const std::vector<double>& m2) {
  const size_t cn = mean.size();
  std::vector<double> first(cn + 1);
  for (size_t c = 0; c < cn; ++c) first[c] = rows * mean[c];
  first[cn] = rows;
  group.sum(first);
  GlobalMoments g{first[cn], std::vector<double>(cn), std::vector<double>(cn)};
  if (g.rows < 2)
    throw Error(fmt::format("{}: batch_norm: training needs more than one value per channel, got {} rows on {} ranks",
                            layer, g.rows, group.size()));
  for (size_t c = 0; c < cn; ++c) {
    g.mean[c] = first[c] / g.rows;
    const double shift = mean[c] - g.mean[c];
    g.m2[c] = m2[c] + rows * shift * shift;
  }
  group.sum(g.m2);
  return g;
}

}  // namespace

void BatchNorm2d::forward_synchronized(const Tensor& x, Tensor& y) {
  Backend& b = backend();
  layer_util::ensure_tensor(b, sync_a_, {channels_});
  layer_util::ensure_tensor(b, sync_b_, {channels_});
  b.batch_norm_local_stats(x, sync_a_, sync_b_);
  const auto rows = static_cast<double>(x.numel() / channels_);
  const GlobalMoments g = combine_moments(*group_, name(), rows, download(b, sync_a_), download(b, sync_b_));
  synced_rows_ = g.rows;

  std::vector<double> var(g.m2.size()), invstd(g.m2.size());
  std::vector<double> running_mean = download(b, running_mean_.value), running_var = download(b, running_var_.value);
  const double m = momentum_;
  for (size_t c = 0; c < var.size(); ++c) {
    var[c] = g.m2[c] / g.rows;
    invstd[c] = 1.0 / std::sqrt(var[c] + static_cast<double>(eps_));
    running_mean[c] = (1.0 - m) * running_mean[c] + m * g.mean[c];
    running_var[c] = (1.0 - m) * running_var[c] + m * g.m2[c] / (g.rows - 1.0);
  }
  upload(b, g.mean, saved_mean_);
  upload(b, invstd, saved_invstd_);
  upload(b, running_mean, running_mean_.value);
  upload(b, running_var, running_var_.value);
  upload(b, var, sync_b_);
  // y = (x - mean) * gamma / sqrt(var + eps) + beta: inference's formula with the global statistics.
  b.batch_norm_forward_eval(x, gamma_.value, beta_.value, saved_mean_, sync_b_, eps_, y);
}

void BatchNorm2d::backward_synchronized(const Tensor& x, const Tensor& dy, Tensor& dx) {
  CONVNET_CHECK(synced_rows_ > 0, "{}: backward with a replica group needs a synchronized train forward", name());
  Backend& b = backend();
  // This rank's sums are its dbeta and dgamma; their totals over the ranks give dx.
  b.batch_norm_backward_reduce(x, dy, saved_mean_, saved_invstd_, beta_.grad, gamma_.grad);
  std::vector<double> sums = download(b, beta_.grad);
  const std::vector<double> sum_dy_xhat = download(b, gamma_.grad);
  sums.insert(sums.end(), sum_dy_xhat.begin(), sum_dy_xhat.end());
  group_->sum(sums);
  for (double& s : sums) s /= synced_rows_;
  const auto cn = static_cast<std::ptrdiff_t>(channels_);
  upload(b, std::vector<double>(sums.begin(), sums.begin() + cn), sync_a_);
  upload(b, std::vector<double>(sums.begin() + cn, sums.end()), sync_b_);
  b.batch_norm_backward_apply(x, dy, gamma_.value, saved_mean_, saved_invstd_, sync_a_, sync_b_, dx);
}

}  // namespace convnet
