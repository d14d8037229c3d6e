// The fmt-free part of error.h, for translation units that cannot include fmt (nvcc 13 in C++20
// mode rejects <fmt/format.h>): every .cu file checks its arguments with CONVNET_CHECK_MSG.
#pragma once

#include <string>

namespace convnet {

// Throws convnet::Error "FILE:LINE: check failed: CONDITION: MESSAGE".
[[noreturn]] void fail_check(const char* file, int line, const char* condition, const std::string& message);

}  // namespace convnet

// CONVNET_CHECK_MSG(cond, message): like CONVNET_CHECK with a ready-made std::string message.
#define CONVNET_CHECK_MSG(cond, message)                                                 \
  do {                                                                                   \
    if (!(cond)) ::convnet::fail_check(__FILE__, __LINE__, #cond, std::string(message)); \
  } while (0)
