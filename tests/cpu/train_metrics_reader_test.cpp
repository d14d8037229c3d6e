// metrics.jsonl lines that parse as JSON but not as numbers the reader can hold, and records the
// curves.svg plot must draw in bounded time (both found for tests/fuzz/fuzz_metrics; the inputs
// are corpus/metrics/regression-*).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/train/metrics_log.h"
#include "core/train/plot_svg.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;
using testing::TempDir;

TEST(TrainMetricsReader, StepThatIsNotAnIntegerIsAnErrorNamingTheLine) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  testing::write_file(path,
                      "{\"split\":\"train\",\"step\":1,\"epoch\":0.5,\"loss\":1,\"accuracy\":0.1}\n"
                      "{\"split\":\"train\",\"step\":1e300,\"epoch\":0.5,\"loss\":1,\"accuracy\":0.1}\n");
  EXPECT_EQ(error_of([&] { (void)read_metrics(path); }),
            path + ":2: not a metrics record: step 1e+300 is not an integer");
}

TEST(TrainMetricsReader, PlotOfValuesCloserThanTheirPrecisionFinishes) {
  // 1e16 and the next double: a tick step of 0.5 does not change 1e16, which used to loop forever.
  std::vector<MetricsRecord> records(2);
  records[0] = {"train", 1, 0.5, 0.1, 1e16, 0.1, 0};
  records[1] = {"train", 2, 1.0, 0.1, 1.0000000000000002e16, 0.1, 0};
  const std::string svg = render_metrics_svg(records, "run");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

}  // namespace
}  // namespace convnet
