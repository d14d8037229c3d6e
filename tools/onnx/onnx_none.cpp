// The build without libonnx-dev: convnet export --format onnx says what to install.
#include "core/base/error.h"
#include "tools/onnx/onnx_export.h"

namespace convnet::cli {

namespace {
[[noreturn]] void missing() {
  throw Error("this convnet was built without ONNX: install libonnx-dev and libprotobuf-dev and rebuild");
}
}  // namespace

bool onnx_export_available() {
  return false;
}

std::string export_onnx(const Graph&, const std::map<std::string, Tensor>&, const OnnxExportOptions&) {
  missing();
}

void check_onnx_model(const std::string&) {
  missing();
}

}  // namespace convnet::cli
