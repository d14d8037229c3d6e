#include "tools/commands.h"

namespace convnet::cli {

std::string evaluate_tta(const EvaluateOptions& options, const std::string& checkpoint_tta) {
  if (!options.tta.empty()) return options.tta;
  // --tta alone asks for test-time augmentation: the checkpoint's own, else the strongest.
  if (options.tta_given && checkpoint_tta == "none") return "flip_translate";
  return checkpoint_tta;
}

}  // namespace convnet::cli
