#include "tests/common/gradient_check.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/base/rng.h"
#include "core/base/tensor.h"

namespace convnet::testing {

namespace {

constexpr size_t kMaxProblems = 8;

Shape batched(int64_t n, const Shape& example) {
  Shape s{n};
  s.insert(s.end(), example.begin(), example.end());
  return s;
}

void fill_input(Tensor& x, Rng& rng, const GradientCheckOptions& o) {
  if (o.distinct_inputs) {
    const int64_t n = x.numel();
    const double gap = 5.0 * o.step;
    std::vector<float> values(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k)
      values[static_cast<size_t>(k)] = static_cast<float>((static_cast<double>(k - n / 2) + 0.5) * gap);
    for (int64_t i = n - 1; i > 0; --i)  // Fisher-Yates
      std::swap(values[static_cast<size_t>(i)], values[rng.below(static_cast<uint64_t>(i + 1))]);
    std::copy(values.begin(), values.end(), x.f32());
    return;
  }
  for (float& v : x.span()) {
    do {
      v = rng.uniform(o.input_low, o.input_high);
    } while (std::abs(v) < o.kink_margin);
  }
}

class Checker {
 public:
  Checker(Layer& layer, const GradientCheckOptions& o, GradientCheckReport& report)
      : layer_(layer), o_(o), report_(report) {}

  void problem(std::string text) {
    if (report_.problems.size() < kMaxProblems) report_.problems.push_back(std::move(text));
  }

  // Forward with y poisoned first, returns sum(y * R) in double.
  double loss(const Tensor& x, Tensor& y, const Tensor& r) {
    y.fill(std::numeric_limits<float>::quiet_NaN());
    layer_.set_step_seed(o_.step_seed);
    layer_.forward(x, y, o_.mode);
    const float* py = y.f32();
    const float* pr = r.f32();
    double sum = 0.0;
    for (int64_t i = 0; i < y.numel(); ++i) sum += static_cast<double>(py[i]) * static_cast<double>(pr[i]);
    return sum;
  }

  // Central difference of the loss with respect to v (an element of x or of a parameter).
  double numeric(float& v, const Tensor& x, Tensor& y, const Tensor& r) {
    const float saved = v;
    const float plus = saved + o_.step, minus = saved - o_.step;
    v = plus;
    const double lp = loss(x, y, r);
    v = minus;
    const double lm = loss(x, y, r);
    v = saved;
    return (lp - lm) / (static_cast<double>(plus) - static_cast<double>(minus));
  }

  void compare(const std::string& what, int64_t index, double analytic, double numeric_value) {
    const double scale = std::max({std::abs(analytic), std::abs(numeric_value), 1.0});
    double err = std::abs(analytic - numeric_value) / scale;
    if (std::isnan(err)) err = std::numeric_limits<double>::infinity();
    report_.max_error = std::max(report_.max_error, err);
    if (!(err <= o_.threshold)) {
      ++report_.failed;
      problem(fmt::format("{}[{}]: analytic {:.7g} vs numeric {:.7g} (relative error {:.3g})", what, index, analytic,
                          numeric_value, err));
    }
  }

  // Exact-ish equality of a gradient written twice (same inputs, so it should be bit-identical).
  void same(const std::string& what, const Tensor& got, const Tensor& want) {
    const float* g = got.f32();
    const float* w = want.f32();
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double tol = 1e-6 * std::max(1.0, std::abs(static_cast<double>(w[i])));
      if (!(std::abs(static_cast<double>(g[i]) - static_cast<double>(w[i])) <= tol)) {
        problem(fmt::format("{}[{}]: {:.7g}, but the first backward wrote {:.7g}", what, i, g[i], w[i]));
        return;
      }
    }
  }

 private:
  Layer& layer_;
  const GradientCheckOptions& o_;
  GradientCheckReport& report_;
};

}  // namespace

std::string GradientCheckReport::summary() const {
  std::string s = fmt::format("checked {} input and {} parameter gradient elements: {} failed, max error {:.3g}",
                              input_checked, param_checked, failed, max_error);
  for (const std::string& p : problems) s += "\n  " + p;
  return s;
}

GradientCheckReport run_gradient_check(Layer& layer, const Shape& example_shape, Backend& backend,
                                       const GradientCheckOptions& o) {
  GradientCheckReport report;
  if (backend.device().kind != DeviceKind::cpu) {
    report.problems.push_back("the gradient checker needs a host-memory (CPU) backend, got " + backend.name());
    return report;
  }
  Rng rng(o.seed);
  const Shape out_shape = layer.configure(example_shape);
  layer.set_backend(backend);
  layer.allocate_parameters();
  layer.initialize(rng);
  std::vector<Parameter*> params = layer.parameters();
  if (o.randomize_parameters)
    for (Parameter* p : params)
      for (float& v : p->value.span()) v = rng.uniform(o.param_low, o.param_high);

  Tensor x = backend.empty(batched(o.batch, example_shape));
  Tensor y = backend.empty(batched(o.batch, out_shape));
  Tensor r = backend.empty(batched(o.batch, out_shape));
  Tensor dx = backend.empty(x.shape());
  fill_input(x, rng, o);
  for (float& v : r.span()) v = rng.uniform(-1.0f, 1.0f);

  Checker c(layer, o, report);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();

  // 1. Analytic gradients, with every output poisoned.
  const double base_loss = c.loss(x, y, r);
  if (!std::isfinite(base_loss)) c.problem("forward left non-finite values in y (not every element written?)");
  dx.fill(nan);
  for (Parameter* p : params) p->grad.fill(nan);
  layer.backward(x, y, r, &dx);
  const Tensor dx_ref = dx.clone();
  std::vector<Tensor> grad_ref;
  for (Parameter* p : params) grad_ref.push_back(p->grad.clone());

  // 2. dx = nullptr must still write every parameter gradient, identically.
  for (Parameter* p : params) p->grad.fill(inf);
  layer.backward(x, y, r, nullptr);
  for (size_t i = 0; i < params.size(); ++i)
    c.same(params[i]->name + ".grad (backward with dx = nullptr)", params[i]->grad, grad_ref[i]);

  // 3. Outputs holding large finite values must be overwritten, not accumulated into.
  dx.fill(1e6f);
  for (Parameter* p : params) p->grad.fill(-1e6f);
  layer.backward(x, y, r, &dx);
  c.same("dx (repeated backward)", dx, dx_ref);
  for (size_t i = 0; i < params.size(); ++i)
    c.same(params[i]->name + ".grad (repeated backward)", params[i]->grad, grad_ref[i]);

  // 4. Numeric gradients of every input and parameter element.
  float* px = x.f32();
  const float* pdx = dx_ref.f32();
  for (int64_t i = 0; i < x.numel(); ++i) {
    c.compare("input", i, pdx[i], c.numeric(px[i], x, y, r));
    ++report.input_checked;
  }
  for (size_t k = 0; k < params.size(); ++k) {
    float* pv = params[k]->value.f32();
    const float* pg = grad_ref[k].f32();
    for (int64_t j = 0; j < params[k]->value.numel(); ++j) {
      c.compare(params[k]->name, j, pg[j], c.numeric(pv[j], x, y, r));
      ++report.param_checked;
    }
  }
  return report;
}

::testing::AssertionResult gradients_match(Layer& layer, const Shape& example_shape, Backend& backend,
                                           const GradientCheckOptions& options) {
  const GradientCheckReport report = run_gradient_check(layer, example_shape, backend, options);
  if (report.ok()) return ::testing::AssertionSuccess() << report.summary();
  return ::testing::AssertionFailure() << layer.name() << " (" << layer.description() << "): " << report.summary();
}

}  // namespace convnet::testing
