// CIFAR-10 binary batches: any bytes as a batch file (read_cifar10_binary_file: the data set must
// validate and hold exactly size / 3073 images) and as its batches.meta.txt (read_cifar10_meta).
#include <string>

#include "datasets/cifar_binary.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace convnet;

void check_dataset(const ImageDataset& data, size_t file_size) {
  fuzz::must_hold("read_cifar10_binary_file returned an invalid data set", [&] { data.validate(); });
  if (data.size * kCifarRecordBytes != static_cast<int64_t>(file_size) ||
      data.pixels.size() != static_cast<size_t>(data.size * data.image_bytes()))
    fuzz::invariant_failed("read_cifar10_binary_file accepted " + std::to_string(file_size) + " bytes as " +
                           std::to_string(data.size) + " images");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir scratch;
  const std::string batch = scratch.write("data_batch_1.bin", fuzz::as_text(data, size));
  fuzz::loads_or_rejects([&] { check_dataset(read_cifar10_binary_file(batch), size); });
  const std::string meta = scratch.write("batches.meta.txt", fuzz::as_text(data, size));
  fuzz::loads_or_rejects([&] { (void)read_cifar10_meta(meta); });
  return 0;
}
