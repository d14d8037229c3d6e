// Learning-rate schedules at hand-computed steps: constant, multistep (integer and fractional
// milestones), cosine, linear, each after a linear warm-up, and steps past the end of training.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "core/base/error.h"
#include "core/optim/schedule.h"

namespace convnet {
namespace {

ScheduleConfig schedule(const std::string& name, double warmup_epochs = 0) {
  ScheduleConfig c;
  c.name = name;
  c.warmup_epochs = warmup_epochs;
  return c;
}

constexpr double kTol = 1e-12;

// Expects lr_at(step) == lr for every {step, lr}.
void expect_lrs(const LrSchedule& s, std::initializer_list<std::pair<int64_t, double>> points) {
  for (const auto& [step, lr] : points) EXPECT_NEAR(s.lr_at(step), lr, kTol) << "step " << step;
}

TEST(LrSchedule, ConstantHoldsEverywhere) {
  const LrSchedule s(schedule("constant"), 0.05, 10, 100);
  for (int64_t step : {0, 1, 50, 99, 100, 1000}) EXPECT_NEAR(s.lr_at(step), 0.05, kTol) << step;
}

TEST(LrSchedule, MultistepAtIntegerMilestones) {
  ScheduleConfig c = schedule("multistep");
  c.milestones = {3, 6};
  c.gamma = 0.1;
  const LrSchedule s(c, 0.2, 10, 100);
  expect_lrs(s, {{0, 0.2}, {29, 0.2}, {30, 0.02}, {59, 0.02}, {60, 0.002}, {99, 0.002}, {500, 0.002}});
}

TEST(LrSchedule, MultistepAtFractionalUnsortedMilestones) {
  ScheduleConfig c = schedule("multistep");
  c.milestones = {4.04, 1.25, 2.5};  // steps round(40.4) = 40, round(12.5) = 13, 25
  c.gamma = 0.5;
  const LrSchedule s(c, 1.0, 10, 60);
  expect_lrs(s, {{12, 1.0}, {13, 0.5}, {24, 0.5}, {25, 0.25}, {39, 0.25}, {40, 0.125}, {60, 0.125}});
}

TEST(LrSchedule, MultistepMilestoneBeyondTrainingNeverFires) {
  ScheduleConfig c = schedule("multistep");
  c.milestones = {20};
  const LrSchedule s(c, 1.0, 10, 100);
  expect_lrs(s, {{100, 1.0}, {250, 1.0}});  // 250: held at the value of the final step
}

TEST(LrSchedule, CosineStartMiddleEnd) {
  const LrSchedule s(schedule("cosine"), 0.2, 10, 100);
  expect_lrs(s, {
                    {0, 0.2},
                    {25, 0.1 * (1 + std::sqrt(0.5))},  // (1 + cos(pi/4)) / 2
                    {50, 0.1},
                    {75, 0.1 * (1 - std::sqrt(0.5))},
                    {100, 0.0},
                    {1000, 0.0},
                });
}

TEST(LrSchedule, CosineWithFinalFactor) {
  ScheduleConfig c = schedule("cosine");
  c.final_lr_factor = 0.1;
  const LrSchedule s(c, 1.0, 4, 40);
  expect_lrs(s, {
                    {0, 1.0},
                    {20, 0.55},  // 0.1 + 0.9 * 0.5
                    {40, 0.1},
                    {41, 0.1},
                });
}

TEST(LrSchedule, LinearDecay) {
  ScheduleConfig c = schedule("linear");
  c.final_lr_factor = 0.2;
  const LrSchedule s(c, 1.0, 8, 80);
  expect_lrs(s, {
                    {0, 1.0},
                    {20, 0.8},  // 1 + (0.2 - 1) * 0.25
                    {40, 0.6},
                    {80, 0.2},
                    {10000, 0.2},
                });
}

TEST(LrSchedule, WarmupThenCosine) {
  ScheduleConfig c = schedule("cosine", 2);  // 20 warm-up steps
  c.warmup_start_factor = 0.1;
  const LrSchedule s(c, 1.0, 10, 120);
  expect_lrs(s, {
                    {0, 0.1},
                    {10, 0.55},   // 0.1 + 0.9 * 10/20
                    {19, 0.955},  // 0.1 + 0.9 * 19/20
                    {20, 1.0},    // cosine starts at t = 0
                    {70, 0.5},    // t = 50/100
                    {120, 0.0},
                });
}

TEST(LrSchedule, WarmupThenLinear) {
  ScheduleConfig c = schedule("linear", 1);
  c.warmup_start_factor = 0.0;
  c.final_lr_factor = 0.5;
  const LrSchedule s(c, 0.4, 5, 25);  // 5 warm-up steps, 20 decay steps
  expect_lrs(s, {
                    {0, 0.0},
                    {2, 0.16},
                    {5, 0.4},
                    {15, 0.3},  // 0.4 + (0.2 - 0.4) * 0.5
                    {25, 0.2},
                });
}

TEST(LrSchedule, WarmupThenConstant) {
  ScheduleConfig c = schedule("constant", 0.5);
  c.warmup_start_factor = 0.2;
  const LrSchedule s(c, 2.0, 8, 40);  // 4 warm-up steps
  expect_lrs(s, {
                    {0, 0.4},
                    {1, 0.8},  // 2 * (0.2 + 0.8 / 4)
                    {3, 1.6},
                    {4, 2.0},
                    {39, 2.0},
                });
}

TEST(LrSchedule, WarmupThenMultistepIgnoresMilestonesDuringWarmup) {
  ScheduleConfig c = schedule("multistep", 2);
  c.warmup_start_factor = 0.1;
  c.milestones = {1, 3};
  c.gamma = 0.1;
  const LrSchedule s(c, 1.0, 10, 50);
  expect_lrs(s, {
                    {15, 0.775},  // ramp: 0.1 + 0.9 * 15/20
                    {20, 0.1},    // milestone at step 10 already passed
                    {29, 0.1},
                    {30, 0.01},
                });
}

TEST(LrSchedule, FractionalWarmupRoundsToNearestStep) {
  ScheduleConfig c = schedule("constant", 0.25);  // 2.5 steps -> 3
  c.warmup_start_factor = 0.4;
  const LrSchedule s(c, 1.0, 10, 30);
  expect_lrs(s, {{0, 0.4}, {1, 0.6}, {2, 0.8}, {3, 1.0}});
}

TEST(LrSchedule, WarmupFillingTheRunEndsAtTheFinalValue) {
  ScheduleConfig c = schedule("cosine", 10);
  c.warmup_start_factor = 0.0;
  c.final_lr_factor = 0.1;
  const LrSchedule s(c, 1.0, 1, 10);
  expect_lrs(s, {{5, 0.5}, {9, 0.9}, {10, 0.1}, {11, 0.1}});
}

TEST(LrSchedule, RejectsInvalidArguments) {
  EXPECT_THROW(LrSchedule(schedule("cosine"), 0.1, 10, 0), Error);
  EXPECT_THROW(LrSchedule(schedule("cosine"), 0.1, 0, 100), Error);
  EXPECT_THROW(LrSchedule(schedule("exponential"), 0.1, 10, 100), ConfigError);
  EXPECT_THROW(LrSchedule(schedule("cosine", -1), 0.1, 10, 100), ConfigError);
  const LrSchedule s(schedule("constant"), 0.1, 10, 100);
  EXPECT_THROW(s.lr_at(-1), Error);
}

}  // namespace
}  // namespace convnet
