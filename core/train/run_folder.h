// The output folder of one training run (output.dir), prepared before anything is trained:
// created, locked against a second `convnet train` (OutputDirLock), cleared of temporary files a
// killed run left, and checked against mixing two runs:
// - fresh: a folder that already holds a run (metrics.jsonl or a checkpoint) is refused, as
//   Hugging Face's Trainer refuses a non-empty output_dir; the error offers --resume, another
//   output.dir, or --overwrite;
// - overwrite: that run's files (metrics, checkpoints, config.yaml, plot) are deleted first;
// - resume: the folder is continued (the Trainer drops metrics rows past the resumed step).
#pragma once

#include <string>
#include <vector>

#include "core/train/output_lock.h"

namespace convnet {

enum class RunStart { fresh, overwrite, resume };

// The files a run writes into its folder, the lock aside.
const std::vector<std::string>& run_file_names();

class RunFolder {
 public:
  // `program`: how to spell convnet in the command the refusal suggests. Throws ConfigError for a
  // fresh run into a folder holding a run, Error when the folder cannot be created or is in use.
  RunFolder(const std::string& dir, RunStart start, const std::string& program = "convnet");

 private:
  OutputDirLock lock_;
};

}  // namespace convnet
