#include "core/train/plot_svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace convnet {

namespace {

struct Series {
  std::string label, color;
  std::vector<std::pair<double, double>> points;
};

struct Panel {
  double x0, y0, width, height;  // pixel box of the plotting area
  std::string title, x_label;
};

// Rounds a span to a "nice" tick step (1, 2 or 5 times a power of ten).
double nice_step(double span, int ticks) {
  const double raw = span / ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

// The tick values first, first + step, ... up to last: at most 64 of them, so a span below the
// values' precision (1e16 to 1e16 + 2: adding the step changes nothing) cannot loop forever.
std::vector<double> tick_values(double first, double last, double step) {
  std::vector<double> out;
  if (!(step > 0) || !std::isfinite(first)) return out;
  for (int i = 0; i < 64; ++i) {
    const double v = first + i * step;
    if (!(v <= last)) break;
    out.push_back(v);
  }
  return out;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

std::string draw_panel(const Panel& p, const std::vector<Series>& series) {
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const Series& s : series)
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
  std::string svg = fmt::format(R"(<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>)",
                                p.x0 + p.width / 2, p.y0 - 10, escape(p.title));
  svg += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>)", p.x0, p.y0, p.width,
                     p.height);
  if (!std::isfinite(xmin)) return svg + fmt::format(R"(<text x="{}" y="{}">no data yet</text>)", p.x0 + 20, p.y0 + 30);
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  const double ystep = nice_step(ymax - ymin, 5);
  ymin = std::floor(ymin / ystep) * ystep;
  ymax = std::ceil(ymax / ystep) * ystep;
  auto px = [&](double x) { return p.x0 + (x - xmin) / (xmax - xmin) * p.width; };
  auto py = [&](double y) { return p.y0 + p.height - (y - ymin) / (ymax - ymin) * p.height; };
  for (double y : tick_values(ymin, ymax + ystep / 2, ystep))
    svg += fmt::format(
        R"(<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#eee"/><text x="{3}" y="{4:.1f}" font-size="11" text-anchor="end">{5:g}</text>)",
        p.x0, p.x0 + p.width, py(y), p.x0 - 5, py(y) + 4, y);
  const double xstep = nice_step(xmax - xmin, 5);
  for (double x : tick_values(std::ceil(xmin / xstep) * xstep, xmax, xstep))
    svg += fmt::format(R"(<text x="{:.1f}" y="{}" font-size="11" text-anchor="middle">{:g}</text>)", px(x),
                       p.y0 + p.height + 15, x);
  svg += fmt::format(R"(<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>)", p.x0 + p.width / 2,
                     p.y0 + p.height + 32, escape(p.x_label));
  double legend_y = p.y0 + 15;
  for (const Series& s : series) {
    if (s.points.empty()) continue;
    std::string path;
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", px(x), py(y));
    svg += fmt::format(R"(<path d="{}" fill="none" stroke="{}" stroke-width="1.5"/>)", path, s.color);
    svg += fmt::format(R"(<text x="{}" y="{}" font-size="11" fill="{}">{}</text>)", p.x0 + p.width - 110, legend_y,
                       s.color, escape(s.label));
    legend_y += 14;
  }
  return svg;
}

}  // namespace

std::string render_metrics_svg(const std::vector<MetricsRecord>& records, const std::string& title) {
  Series loss{"train loss", "#1f77b4", {}}, test_loss{"test loss", "#d62728", {}};
  Series train_acc{"train accuracy", "#1f77b4", {}}, test_acc{"test accuracy", "#d62728", {}};
  for (const MetricsRecord& r : records) {
    if (r.split == "train") {
      loss.points.emplace_back(r.epoch, r.loss);
      train_acc.points.emplace_back(r.epoch, r.accuracy);
    } else {
      test_loss.points.emplace_back(r.epoch, r.loss);
      test_acc.points.emplace_back(r.epoch, r.accuracy);
    }
  }
  std::string svg = R"(<svg xmlns="http://www.w3.org/2000/svg" width="960" height="400" font-family="sans-serif">)"
                    R"(<rect width="100%" height="100%" fill="white"/>)";
  svg += fmt::format(R"(<text x="480" y="22" font-size="16" text-anchor="middle">{}</text>)", escape(title));
  svg += draw_panel({70, 60, 360, 280, "loss", "epoch"}, {loss, test_loss});
  svg += draw_panel({560, 60, 360, 280, "accuracy", "epoch"}, {train_acc, test_acc});
  return svg + "</svg>\n";
}

}  // namespace convnet
