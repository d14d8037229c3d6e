#include "datasets/image_codec.h"

#include <fmt/format.h>
// clang-format off
#include <cstdio>  // jpeglib.h needs size_t and FILE declared first
#include <jpeglib.h>
// clang-format on
#include <png.h>

#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/base/error.h"
#include "core/base/regular_file.h"

namespace convnet {

namespace {

// Decoding allocates height x width x 3 bytes before reading any pixel data, so a corrupt or
// hostile header (JPEG allows 65500 x 65500, PNG 10^6 x 10^6) must not decide it unchecked.
constexpr uint64_t kMaxImagePixels = uint64_t{1} << 25;  // 33.5 Mpx (8192 x 4096): 100 MB of RGB

bool too_many_pixels(uint64_t height, uint64_t width) {
  return height * width > kMaxImagePixels;  // both at most 2^32 - 1: no overflow
}

// The message for too_many_pixels, into a C buffer (the JPEG decoder may not hold a std::string).
void describe_too_many_pixels(char* out, size_t capacity, uint64_t height, uint64_t width) {
  std::snprintf(out, capacity, "%llux%llu pixels is more than the %llu this reader decodes (corrupt header?)",
                static_cast<unsigned long long>(width), static_cast<unsigned long long>(height),
                static_cast<unsigned long long>(kMaxImagePixels));
}

// libjpeg reports fatal errors through error_exit, which must not return. Exceptions cannot
// safely cross the C library, so it longjmps back to decode_jpeg_into, which only has trivially
// destructible locals between setjmp and the libjpeg calls.
struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int warnings;
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  if (msg_level < 0 && err->warnings++ == 0) (*cinfo->err->format_message)(cinfo, err->message);  // keep the first
}

// Returns 0 on success, 1 when libjpeg failed (message in err.message). `out` is resized by the
// caller's lambda before any pixel is written, so a longjmp leaves it merely partly written.
int decode_jpeg_into(const uint8_t* data, size_t size, JpegErrorManager& err, std::vector<uint8_t>& out, int& height,
                     int& width) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit;
  err.pub.emit_message = jpeg_emit_message;
  err.warnings = 0;
  err.message[0] = '\0';
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (too_many_pixels(cinfo.image_height, cinfo.image_width)) {  // before libjpeg allocates for it
    describe_too_many_pixels(err.message, sizeof err.message, cinfo.image_height, cinfo.image_width);
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  cinfo.out_color_space = JCS_RGB;  // libjpeg-turbo converts grayscale and YCbCr to RGB
  jpeg_start_decompress(&cinfo);
  height = static_cast<int>(cinfo.output_height);
  width = static_cast<int>(cinfo.output_width);
  if (cinfo.output_components != 3) {
    std::snprintf(err.message, sizeof err.message, "%d components after RGB conversion", cinfo.output_components);
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  // resize() may throw bad_alloc; that unwinds normally (no longjmp pending) after cleanup below.
  try {
    out.resize(static_cast<size_t>(height) * static_cast<size_t>(width) * 3);
  } catch (...) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.data() + static_cast<size_t>(cinfo.output_scanline) * static_cast<size_t>(width) * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return 0;
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  constexpr uint64_t kMaxImageFileBytes = uint64_t{256} << 20;  // a CIFAR image is about a kilobyte
  return read_regular_file(path, kMaxImageFileBytes, "image file");
}

DecodedImage decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  DecodedImage img;
  JpegErrorManager err{};
  if (decode_jpeg_into(data, size, err, img.rgb, img.height, img.width) != 0)
    throw Error(fmt::format("{}: not a valid JPEG ({})", name, err.message));
  if (err.warnings > 0) throw Error(fmt::format("{}: not a valid JPEG ({})", name, err.message));
  return img;
}

DecodedImage decode_png(const uint8_t* data, size_t size, const std::string& name) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, data, size))
    throw Error(fmt::format("{}: not a valid PNG ({})", name, image.message));
  if (too_many_pixels(image.height, image.width)) {
    char message[160];
    describe_too_many_pixels(message, sizeof message, image.height, image.width);
    png_image_free(&image);
    throw Error(fmt::format("{}: not a valid PNG ({})", name, message));
  }
  image.format = PNG_FORMAT_RGB;  // gray is expanded, alpha composited onto black
  DecodedImage img;
  img.height = static_cast<int>(image.height);
  img.width = static_cast<int>(image.width);
  img.rgb.resize(PNG_IMAGE_SIZE(image));
  const png_color black{0, 0, 0};
  if (!png_image_finish_read(&image, &black, img.rgb.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw Error(fmt::format("{}: not a valid PNG ({})", name, message));
  }
  return img;
}

DecodedImage decode_image(const uint8_t* data, size_t size, const std::string& name) {
  static const uint8_t kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && std::memcmp(data, kPngMagic, 8) == 0) return decode_png(data, size, name);
  if (size >= 2 && data[0] == 0xFF && data[1] == 0xD8) return decode_jpeg(data, size, name);
  // Unrecognised bytes: let the decoder the name suggests explain what is wrong.
  std::string ext = std::filesystem::path(name).extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (ext == ".png") return decode_png(data, size, name);
  if (ext == ".jpg" || ext == ".jpeg") return decode_jpeg(data, size, name);
  throw Error(fmt::format("{}: not a JPEG or PNG file (unrecognised leading bytes)", name));
}

DecodedImage decode_image_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

}  // namespace convnet
