// A self-contained SVG plot of a run's curves: training loss over steps (left panel) and
// training / test accuracy over epochs (right panel). Any browser shows it; no plotting library.
#pragma once

#include <string>
#include <vector>

#include "core/train/metrics_log.h"

namespace convnet {

std::string render_metrics_svg(const std::vector<MetricsRecord>& records, const std::string& title);

}  // namespace convnet
