// metrics.jsonl and the curves.svg behind it: any bytes as a metrics file (read_metrics), and the
// records it yields drawn (render_metrics_svg), which must produce one complete SVG document.
#include <string>

#include "core/train/metrics_log.h"
#include "core/train/plot_svg.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace convnet;

void check_svg(const std::string& svg) {
  if (svg.rfind("<svg", 0) != 0 && svg.rfind("<?xml", 0) != 0)
    fuzz::invariant_failed("render_metrics_svg output does not start an SVG document");
  if (svg.find("</svg>") == std::string::npos) fuzz::invariant_failed("render_metrics_svg output has no </svg>");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir scratch;
  const std::string path = scratch.write("metrics.jsonl", fuzz::as_text(data, size));
  fuzz::loads_or_rejects([&] { check_svg(render_metrics_svg(read_metrics(path), "fuzz run")); });
  return 0;
}
