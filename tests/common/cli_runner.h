// Runs a command-line program the way a user would and captures what it printed: for the tests of
// the convnet executable (CONVNET_BINARY, a compile definition of the cli_* tests).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "tests/common/test_util.h"

namespace convnet::testing {

struct RunResult {
  int exit_code = -1;  // -1 when the program did not exit normally (e.g. killed by a signal)
  std::string out, err;
};

// Runs `binary args` through the shell with stdin from /dev/null; `args` is shell syntax.
inline RunResult run_program(const std::string& binary, const std::string& args) {
  TempDir io;
  const std::string cmd = binary + " " + args + " >" + io.file("out") + " 2>" + io.file("err") + " </dev/null";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(io.file("out"));
  r.err = read_file(io.file("err"));
  return r;
}

#ifdef CONVNET_BINARY
// Runs the convnet executable with `args`.
inline RunResult run_convnet(const std::string& args) {
  return run_program(CONVNET_BINARY, args);
}

#ifdef CONVNET_SOURCE_DIR
// A few steps of configs/default.yaml on synthetic 16x16 images, into `output_dir`: its
// last.safetensors is a small checkpoint for the tests that read one.
inline RunResult train_tiny_checkpoint(const std::string& output_dir) {
  return run_convnet("train " + std::string(CONVNET_SOURCE_DIR) +
                     "/configs/default.yaml --set output.dir=" + output_dir +
                     " --set data.dataset=synthetic --set data.synthetic_train_size=256 --set "
                     "data.synthetic_test_size=32 --set data.synthetic_image_size=16 --set train.batch_size=32 --set "
                     "train.max_steps=8 --set output.plot=none");
}
#endif
#endif

}  // namespace convnet::testing
