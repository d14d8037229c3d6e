// Matching a data set's classes to a model's: another order is relabelled by name, other names
// are an Error listing what each side lacks.
#include <gtest/gtest.h>

#include "core/base/error.h"
#include "datasets/class_alignment.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

ImageDataset labelled(std::vector<std::string> classes, std::vector<int32_t> labels) {
  ImageDataset d;
  d.size = static_cast<int64_t>(labels.size());
  d.height = d.width = 1;
  d.channels = 1;
  d.pixels.assign(labels.size(), 0);
  d.labels = std::move(labels);
  d.class_names = std::move(classes);
  d.source = "tree/test";
  return d;
}

TEST(ClassAlignment, SameOrderIsLeftAlone) {
  ImageDataset d = labelled({"cat", "dog"}, {0, 1, 1});
  EXPECT_FALSE(align_classes(d, {"cat", "dog"}, "model.safetensors"));
  EXPECT_EQ(d.labels, (std::vector<int32_t>{0, 1, 1}));
}

TEST(ClassAlignment, AnotherOrderIsRelabelledByName) {
  ImageDataset d = labelled({"bird", "cat", "dog"}, {0, 1, 2, 2, 0});
  EXPECT_TRUE(align_classes(d, {"dog", "bird", "cat"}, "model.safetensors"));
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"dog", "bird", "cat"}));
  EXPECT_EQ(d.labels, (std::vector<int32_t>{1, 2, 0, 0, 1}));  // bird -> 1, cat -> 2, dog -> 0
  EXPECT_NO_THROW(d.validate());
}

TEST(ClassAlignment, OtherNamesAreAnErrorListingTheDifferences) {
  ImageDataset renamed = labelled({"cat", "hound"}, {0, 1});
  std::string error = testing::error_of([&] { align_classes(renamed, {"cat", "dog"}, "'m.safetensors'"); });
  EXPECT_NE(error.find("the classes of tree/test are not the ones 'm.safetensors' was trained on: only in the data: "
                       "[hound]; only in the model: [dog] (the data has 2 classes, the model 2)"),
            std::string::npos)
      << error;
  ImageDataset fewer = labelled({"cat"}, {0});
  error = testing::error_of([&] { align_classes(fewer, {"cat", "dog"}, "m"); });
  EXPECT_NE(error.find("only in the data: []; only in the model: [dog]"), std::string::npos) << error;
  EXPECT_EQ(fewer.labels, (std::vector<int32_t>{0}));  // untouched on error
}

}  // namespace
}  // namespace convnet
