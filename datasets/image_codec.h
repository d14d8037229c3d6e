// Decoding JPEG (libjpeg-turbo) and PNG (libpng) files to 8-bit RGB. A corrupt or unsupported
// file is a convnet::Error naming it, never a crash or exit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace convnet {

struct DecodedImage {
  int height = 0, width = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3]
};

// Decodes a JPEG or PNG (chosen by the file's leading bytes, not its name) to RGB; grayscale is
// replicated to three channels and PNG alpha is dropped after compositing onto black. `name` is
// used in messages ("NAME: not a valid JPEG (...)"). JPEG uses libjpeg's default accurate integer
// IDCT and fancy upsampling (the same pixels as PIL/torchvision). Corrupt-data warnings (for
// example a truncated file) are errors too, so a damaged image never enters a data set silently.
DecodedImage decode_image(const uint8_t* data, size_t size, const std::string& name);
DecodedImage decode_image_file(const std::string& path);

DecodedImage decode_jpeg(const uint8_t* data, size_t size, const std::string& name);
DecodedImage decode_png(const uint8_t* data, size_t size, const std::string& name);

// Reads a whole image file (read_regular_file: a FIFO, a device or a directory is refused, and
// anything over 256 MiB); throws convnet::Error naming the path when it cannot.
std::vector<uint8_t> read_file_bytes(const std::string& path);

}  // namespace convnet
