// Converting a CIFAR-10 image-folder tree to the official binary format, which loads in a fraction
// of a second instead of decoding 60,000 JPEGs every run. Used by `convnet convert-data SRC DST`
// (tools/prepare_cifar10.sh --format binary).
#pragma once

#include <string>

namespace convnet {

// Reads `image_root` (train/ and test/ in it or its only subfolder; see image_folder.h) and writes
// `out_dir`/data_batch_1..5.bin (the training images in folder order, split into 5 files of
// near-equal whole-record counts: 10000 each for the full set), test_batch.bin and
// batches.meta.txt. Creates `out_dir` when missing. Throws convnet::Error when the tree is not
// 32x32 RGB with at most 10 classes, or on any read or write failure.
void convert_to_cifar_binary(const std::string& image_root, const std::string& out_dir, int threads = 0);

}  // namespace convnet
