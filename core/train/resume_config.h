// Which configuration a resumed run may differ in from its checkpoint. A checkpoint holds the
// effective config of its run; `convnet train --resume CKPT` continues with it, and a key given
// again (--set, or a CONFIG file) may change only what does not alter the run's arithmetic or
// identity:
//   train.epochs, train.max_steps          how long the run goes (a new train.epochs re-plans the
//                                          lr schedule and the weight average over the new length)
//   train.log_every, train.eval_every,     what is reported and saved
//   train.checkpoint_every, train.save_each_epoch, output.plot
//   train.threads, data.workers,           how the work is spread (results are bit-identical)
//   data.loader, train.distributed_timeout
//   data.path                              where the data lives (its fingerprint is still checked)
// Any other difference (batch size, lr, model, output.dir, ...) is refused with every differing
// key and both values, as PyTorch users would otherwise get a silently different run.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/config.h"

namespace convnet {

// The keys listed above, in that order.
std::span<const std::string_view> resume_changeable_keys();

struct ConfigDifference {
  std::string key;     // "train.batch_size", "model.layers[2]"
  std::string before;  // the value in the first config ("(absent)" when it has none)
  std::string after;
};

// Every key whose value differs between two configs, in file order (compared on to_yaml's text,
// so equal values spelled differently in the sources are equal).
std::vector<ConfigDifference> config_differences(const Config& before, const Config& after);

// Throws ConfigError when `config` differs from `checkpoint_config` (the config saved in
// `checkpoint_path`) in a key a resume may not change, naming each such key with both values.
void check_resume_config(const std::string& checkpoint_path, const Config& checkpoint_config, const Config& config);

}  // namespace convnet
