// predict_image CHECKPOINT IMAGE...: the three most probable classes of each JPEG or PNG image, as a
// program built against the installed convnet library sees them. One line per image, in the format
// of `convnet predict --top 3` ("PATH: CLASS P CLASS P CLASS P"); an image that cannot be read gets
// an error line on stderr naming it, and the exit status is then 1.
#include <convnet/convnet.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHECKPOINT IMAGE...\n", argv[0]);
    return 2;
  }
  try {
    convnet::LoadOptions options;
    options.backend = "cpu";
    convnet::Model model = convnet::Model::load(argv[1], options);
    int status = 0;
    for (int i = 2; i < argc; ++i) {
      try {
        const convnet::Prediction p = model.predict(convnet::decode_image_file(argv[i]));
        std::string line = std::string(argv[i]) + ":";
        for (const convnet::ClassScore& s : p.top(3)) {
          char probability[32];
          std::snprintf(probability, sizeof probability, " %.4f", s.probability);
          line += " " + model.class_names()[static_cast<size_t>(s.index)] + probability;
        }
        std::printf("%s\n", line.c_str());
      } catch (const convnet::Error& e) {  // this image only (the message names it): the others go on
        std::fprintf(stderr, "error: %s\n", e.what());
        status = 1;
      }
    }
    return status;
  } catch (const convnet::Error& e) {  // the checkpoint: nothing can be answered
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
