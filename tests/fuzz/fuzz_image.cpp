// Image files: any bytes decoded as JPEG or PNG (decode_image picks by the leading bytes), and as
// the one image of a class-per-folder tree (train/ and test/ with one class each), which
// load_image_folder turns into a data set. A decoded image's pixel buffer must match its size.
#include <string>

#include "datasets/image_codec.h"
#include "datasets/image_folder.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace convnet;

void check_decoded(const DecodedImage& image) {
  if (image.height <= 0 || image.width <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.height) * static_cast<size_t>(image.width) * 3)
    fuzz::invariant_failed("decoded " + std::to_string(image.height) + "x" + std::to_string(image.width) +
                           " image with " + std::to_string(image.rgb.size()) + " bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir scratch;
  fuzz::loads_or_rejects([&] { check_decoded(decode_image(data, size, "input.png")); });
  const std::string_view bytes = fuzz::as_text(data, size);
  scratch.write("tree/train/cat/0.png", bytes);
  scratch.write("tree/test/cat/0.jpg", bytes);
  fuzz::loads_or_rejects([&] {
    const DataSplits splits = load_image_folder(scratch.path("tree"), 1);
    fuzz::must_hold("load_image_folder returned an invalid data set", [&] {
      splits.train.validate();
      splits.test.validate();
    });
  });
  return 0;
}
