#include "datasets/class_alignment.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>

#include "core/base/error.h"

namespace convnet {

namespace {

// The names of `names` that `other` lacks, in `names`' order.
std::vector<std::string> not_in(const std::vector<std::string>& names, const std::map<std::string, int32_t>& other) {
  std::vector<std::string> out;
  for (const std::string& name : names)
    if (!other.count(name)) out.push_back(name);
  return out;
}

std::map<std::string, int32_t> label_of(const std::vector<std::string>& names) {
  std::map<std::string, int32_t> labels;
  for (size_t i = 0; i < names.size(); ++i) labels.emplace(names[i], static_cast<int32_t>(i));
  return labels;
}

}  // namespace

bool align_classes(ImageDataset& data, const std::vector<std::string>& model_classes, const std::string& model_source) {
  if (data.class_names == model_classes) return false;
  const std::map<std::string, int32_t> model_label = label_of(model_classes);
  const std::map<std::string, int32_t> data_label = label_of(data.class_names);
  const std::vector<std::string> only_data = not_in(data.class_names, model_label);
  const std::vector<std::string> only_model = not_in(model_classes, data_label);
  if (!only_data.empty() || !only_model.empty() || data.class_names.size() != model_classes.size())
    throw Error(fmt::format(
        "the classes of {} are not the ones {} was trained on: only in the data: [{}]; only in the model: [{}] "
        "(the data has {} classes, the model {})",
        data.source, model_source, fmt::join(only_data, ", "), fmt::join(only_model, ", "), data.class_names.size(),
        model_classes.size()));
  std::vector<int32_t> relabel(data.class_names.size());
  for (size_t i = 0; i < data.class_names.size(); ++i) relabel[i] = model_label.at(data.class_names[i]);
  for (int32_t& label : data.labels) label = relabel[static_cast<size_t>(label)];
  data.class_names = model_classes;
  return true;
}

}  // namespace convnet
