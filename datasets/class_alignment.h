// Matching a data set's classes to a trained model's: an image tree's class folders may be
// renamed, missing or listed in another order than the classes the model was trained on, and
// evaluating with the labels as they are would report a meaningless accuracy without a word.
#pragma once

#include <string>
#include <vector>

#include "datasets/image_dataset.h"

namespace convnet {

// Relabels `data` so label i means `model_classes[i]` (the model's class names in its label
// order) and takes those names. The same set of names in another order is relabelled; a different
// set is an Error naming `data.source` and `model_source` and listing the names only one has.
// Returns whether the order differed.
bool align_classes(ImageDataset& data, const std::vector<std::string>& model_classes, const std::string& model_source);

}  // namespace convnet
