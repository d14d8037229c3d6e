// The up-front memory check: a planned graph's parameter count and activation memory, known
// before anything is allocated, against MemAvailable; too large is a ConfigError naming sizes.
#include <gtest/gtest.h>

#include "core/base/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/train/memory_estimate.h"
#include "tests/common/test_util.h"
#include "tests/common/tiny_graph.h"

namespace convnet {
namespace {

using testing::error_of;

TEST(MemoryEstimate, PlannedGraphKnowsItsParametersBeforeAllocating) {
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  Graph graph;
  testing::plan_tiny_graph(graph, *cpu, /*batch_norm=*/true);  // conv 3->4 3x3, bn, relu, flatten, linear 64->5
  const std::optional<MemoryEstimate> e = estimate_host_memory(graph, 8, 3);
  ASSERT_TRUE(e.has_value());
  const int64_t params = (4 * 3 * 3 * 3 + 4) + 2 * 4 + (5 * 64 + 5);
  EXPECT_EQ(e->parameter_count, params);
  EXPECT_EQ(e->parameter_bytes, params * 3 * 4);
  EXPECT_EQ(e->activation_bytes, static_cast<double>(graph.activation_memory(8).total()));
  EXPECT_GT(e->activation_bytes, 0);

  Rng rng(1);
  graph.allocate_parameters(rng);
  EXPECT_EQ(graph.num_parameters(), params);  // parameter_numel() agrees with what is allocated
}

TEST(MemoryEstimate, CopiesCountMomentumAndWeightAverage) {
  Config c;
  c.optimizer.momentum = 0;
  EXPECT_EQ(parameter_copies(c), 2);
  c.optimizer.momentum = 0.9;
  EXPECT_EQ(parameter_copies(c), 3);
  c.ema.mode = "ema";
  EXPECT_EQ(parameter_copies(c), 4);
  c.train.precision = "bf16";  // the bf16 weight copies: half an fp32 copy
  EXPECT_EQ(parameter_copies(c), 4.5);
}

TEST(MemoryEstimate, TooLargeIsAConfigErrorNamingTheSizes) {
  Config c;
  c.model.name = "vgg";
  c.train.batch_size = 128;
  MemoryEstimate e;
  e.parameter_count = 1000;
  e.parameter_bytes = 12000;
  e.activation_bytes = 3.0 * (int64_t{1} << 30);
  EXPECT_EQ(error_of<ConfigError>([&] { check_memory_fits(e, 4.0 * (int64_t{1} << 30), c); }), "");
  const std::string message = error_of<ConfigError>([&] { check_memory_fits(e, 2.0 * (int64_t{1} << 30), c); });
  EXPECT_NE(message.find("model vgg at train.batch_size 128 needs about 3.0 GiB of host memory (3.0 GiB for the "
                         "activations"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("1000 parameters"), std::string::npos) << message;
  EXPECT_NE(message.find("this machine has 2.0 GiB available (MemAvailable"), std::string::npos) << message;
}

TEST(MemoryEstimate, MemAvailableIsReadFromMeminfo) {
  EXPECT_EQ(parse_mem_available("MemTotal:       16000 kB\nMemFree: 100 kB\nMemAvailable:    2048 kB\n"),
            int64_t{2048} * 1024);
  EXPECT_FALSE(parse_mem_available("MemTotal: 16000 kB\n").has_value());
  const std::optional<int64_t> here = available_host_memory();
  ASSERT_TRUE(here.has_value());  // Linux
  EXPECT_GT(*here, 0);
}

}  // namespace
}  // namespace convnet
