// A JPEG or PNG header can claim up to 65500 x 65500 (JPEG) or 10^6 x 10^6 (PNG) pixels in a few
// hundred bytes; decoding must refuse such sizes with an Error before allocating the image
// (found by tests/fuzz/fuzz_image: corpus/image/regression-aa0a4211ec647683).
#include <gtest/gtest.h>
// clang-format off
#include <cstdio>  // jpeglib.h needs size_t and FILE declared first
#include <jpeglib.h>
// clang-format on

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "datasets/image_codec.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::error_of;

void put_be16(std::vector<uint8_t>& bytes, size_t at, uint32_t v) {
  bytes[at] = static_cast<uint8_t>(v >> 8);
  bytes[at + 1] = static_cast<uint8_t>(v);
}

void put_be32(std::vector<uint8_t>& bytes, size_t at, uint32_t v) {
  put_be16(bytes, at, v >> 16);
  put_be16(bytes, at + 2, v & 0xffff);
}

uint32_t crc32(const uint8_t* data, size_t size) {  // PNG's CRC (ISO 3309), bit by bit
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xffffffffu;
}

void append_chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  const size_t start = png.size();
  png.resize(start + 12 + data.size());
  put_be32(png, start, static_cast<uint32_t>(data.size()));
  std::copy(type, type + 4, png.begin() + static_cast<std::ptrdiff_t>(start + 4));
  std::copy(data.begin(), data.end(), png.begin() + static_cast<std::ptrdiff_t>(start + 8));
  put_be32(png, start + 8 + data.size(), crc32(png.data() + start + 4, 4 + data.size()));
}

// An 8-bit RGB PNG of the given size whose image data is one empty (so corrupt) IDAT chunk:
// enough for libpng to read the header and hand over the size.
std::vector<uint8_t> png_claiming(uint32_t width, uint32_t height) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr(13, 0);
  put_be32(ihdr, 0, width);
  put_be32(ihdr, 4, height);
  ihdr[8] = 8;  // bit depth
  ihdr[9] = 2;  // colour type RGB
  append_chunk(png, "IHDR", ihdr);
  append_chunk(png, "IDAT", {});
  append_chunk(png, "IEND", {});
  return png;
}

// An 8x8 baseline JPEG encoded with libjpeg, its frame header then rewritten to `width` x `height`.
std::vector<uint8_t> jpeg_claiming(uint16_t width, uint16_t height) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  jpeg_mem_dest(&cinfo, &out, &out_size);
  cinfo.image_width = cinfo.image_height = 8;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<uint8_t> row(8 * 3, 128);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::vector<uint8_t> bytes(out, out + out_size);
  jpeg_destroy_compress(&cinfo);
  std::free(out);
  for (size_t i = 0; i + 9 < bytes.size(); ++i) {
    if (bytes[i] == 0xFF && bytes[i + 1] == 0xC0) {  // SOF0: length, precision, height, width
      put_be16(bytes, i + 5, height);
      put_be16(bytes, i + 7, width);
      return bytes;
    }
  }
  ADD_FAILURE() << "no SOF0 marker in libjpeg's output";
  return bytes;
}

TEST(DataImageSizeLimit, PngHeaderClaimingGigapixelsIsAnErrorBeforeAllocating) {
  const std::vector<uint8_t> png = png_claiming(1000000, 1000000);
  const std::string message = error_of([&] { (void)decode_image(png.data(), png.size(), "huge.png"); });
  EXPECT_NE(message.find("huge.png: not a valid PNG (1000000x1000000 pixels is more than the"), std::string::npos)
      << message;
}

TEST(DataImageSizeLimit, JpegHeaderClaimingGigapixelsIsAnErrorBeforeAllocating) {
  const std::vector<uint8_t> jpeg = jpeg_claiming(60000, 50000);
  const std::string message = error_of([&] { (void)decode_image(jpeg.data(), jpeg.size(), "huge.jpg"); });
  EXPECT_NE(message.find("huge.jpg: not a valid JPEG (60000x50000 pixels is more than the"), std::string::npos)
      << message;
}

TEST(DataImageSizeLimit, ImagesUpToTheLimitStillDecodePastTheHeader) {
  // 8192 x 4096 is allowed: the PNG is rejected only for its corrupt image data.
  const std::vector<uint8_t> png = png_claiming(8192, 4096);
  const std::string message = error_of([&] { (void)decode_image(png.data(), png.size(), "big.png"); });
  EXPECT_EQ(message.find("pixels is more than"), std::string::npos) << message;
  EXPECT_NE(message.find("big.png: not a valid PNG"), std::string::npos) << message;
}

}  // namespace
}  // namespace convnet
