// safetensors reader: any bytes as a file. An accepted file's tensors must lie inside the data
// it was read from (their byte counts add up to at most the file size; I64 entries shrink to I32), and the checkpoint
// summary (the metadata parser of `convnet info`) must load it or reject it with an Error.
#include <string>

#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace convnet;

void check_tensors(const SafetensorsFile& file, size_t file_size) {
  size_t total = 0;
  for (const NamedTensor& t : file.tensors) total += static_cast<size_t>(t.tensor.bytes());
  if (total > file_size)
    fuzz::invariant_failed("tensors hold " + std::to_string(total) + " bytes, more than the " +
                           std::to_string(file_size) + "-byte file");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir scratch;
  const std::string path = scratch.write("input.safetensors", fuzz::as_text(data, size));
  fuzz::loads_or_rejects([&] { check_tensors(read_safetensors(path), size); });
  fuzz::loads_or_rejects([&] { (void)read_checkpoint_summary(path); });
  return 0;
}
