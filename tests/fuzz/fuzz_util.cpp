#include "tests/fuzz/fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/base/log.h"

namespace convnet::fuzz {

namespace fs = std::filesystem;

ScratchDir::ScratchDir() {
  std::error_code ec;
  const fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
  std::string pattern = (base / "convnet-fuzz-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) invariant_failed("cannot create a scratch directory in " + base.string());
  root_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(root_, ec);
}

std::string ScratchDir::write(const std::string& name, std::string_view bytes) const {
  const std::string file = path(name);
  fs::create_directories(fs::path(file).parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) invariant_failed("cannot write the scratch file " + file);
  return file;
}

void invariant_failed(const std::string& what) {
  std::fprintf(stderr, "fuzz target invariant failed: %s\n", what.c_str());
  std::abort();
}

void quiet_logging() {
  configure_logging("off");
}

namespace {
const bool logging_quieted = (quiet_logging(), true);
}  // namespace

}  // namespace convnet::fuzz
