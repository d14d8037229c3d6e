// Class-per-folder image trees: ROOT/train/<class>/*.{jpg,jpeg,png} and ROOT/test/<class>/*.
//
// Classes are the subfolder names sorted by byte value, and label i is the i-th of them; for the
// CIFAR-10 class names this is also the official label order (airplane=0 .. truck=9). Images
// within a class are taken in file-name order, so the result never depends on directory order or
// thread count. Files with other extensions and hidden entries are skipped.
#pragma once

#include <string>
#include <vector>

#include "datasets/image_dataset.h"

namespace convnet {

// The folder holding train/ and test/: `path` itself when it has both, else its only subfolder
// that has both (archives often unpack into a top-level folder); "" when there is none.
std::string find_image_folder_root(const std::string& path);

// Subfolder names of `split_dir` (hidden ones excluded), sorted.
std::vector<std::string> list_class_folders(const std::string& split_dir);

// Loads `split_dir`/<class>/* decoded to RGB with `threads` threads (0 = all cores); images are
// placed by index, so the result is identical for any thread count. When `expected_classes` is
// not empty the split must have exactly those class folders. Throws convnet::Error naming the
// folder or file when a folder is missing or empty, a class has no images, an image is corrupt,
// or an image's size differs from the first one's.
ImageDataset load_image_folder_split(const std::string& split_dir,
                                     const std::vector<std::string>& expected_classes = {}, int threads = 0);

// Both splits of `root` (as returned by find_image_folder_root); the test split must have the
// same classes as the train split, and the same image size.
DataSplits load_image_folder(const std::string& root, int threads = 0);

}  // namespace convnet
