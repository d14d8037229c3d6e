#include "core/base/error.h"

namespace convnet {

void fail_check(const char* file, int line, const char* condition, const std::string& message) {
  throw Error(fmt::format("{}:{}: check failed: {}: {}", file, line, condition, message));
}

}  // namespace convnet
