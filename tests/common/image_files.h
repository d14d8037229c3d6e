// Writing PNG and JPEG test images with libpng and libjpeg directly, not through the code under
// test (datasets/image_codec.h decodes them). Header-only: the tests that use it link the datasets
// library, which brings both libraries.
#pragma once

#include <gtest/gtest.h>
// clang-format off
#include <cstdio>  // jpeglib.h needs size_t and FILE declared first
#include <jpeglib.h>
// clang-format on
#include <png.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/base/rng.h"

namespace convnet::testing {

// h * w * c random bytes from `seed`: noise images whose every pixel matters to a model.
inline std::vector<uint8_t> random_pixels(int h, int w, int c, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint8_t> p(static_cast<size_t>(h * w * c));
  for (uint8_t& v : p) v = static_cast<uint8_t>(rng.below(256));
  return p;
}

// Written with libpng directly (not through the code under test).
// Any libpng simplified-API format (PNG_FORMAT_RGBA, PNG_FORMAT_LINEAR_RGB for 16 bits, ...).
inline void write_png_format(const std::string& path, int h, int w, const void* pixels, png_uint_32 format) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(w);
  image.height = static_cast<png_uint_32>(h);
  image.format = format;
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, pixels, 0, nullptr)) << image.message;
}

inline void write_png(const std::string& path, int h, int w, const std::vector<uint8_t>& pixels, bool gray = false) {
  write_png_format(path, h, w, pixels.data(), gray ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB);
}

// Written with libjpeg directly: quality 100, no chroma subsampling.
inline void write_jpeg(const std::string& path, int h, int w, const std::vector<uint8_t>& pixels, bool gray = false) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = static_cast<JDIMENSION>(w);
  cinfo.image_height = static_cast<JDIMENSION>(h);
  cinfo.input_components = gray ? 1 : 3;
  cinfo.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 100, TRUE);
  cinfo.comp_info[0].h_samp_factor = cinfo.comp_info[0].v_samp_factor = 1;
  jpeg_start_compress(&cinfo, TRUE);
  const int comps = gray ? 1 : 3;
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row =
        const_cast<uint8_t*>(pixels.data()) + static_cast<size_t>(cinfo.next_scanline) * static_cast<size_t>(w * comps);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

}  // namespace convnet::testing
