// convnet convert-data SRC DST: a class-per-folder image tree to the CIFAR-10 binary format.
#include <spdlog/spdlog.h>

#include "datasets/convert.h"
#include "tools/commands.h"

namespace convnet::cli {

int convert_data_command(const std::string& source, const std::string& destination) {
  convert_to_cifar_binary(source, destination);
  spdlog::info("wrote CIFAR-10 binary files to {}", destination);
  return 0;
}

}  // namespace convnet::cli
