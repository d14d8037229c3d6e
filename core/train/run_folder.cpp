#include "core/train/run_folder.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <system_error>

#include "core/base/error.h"
#include "core/io/atomic_file.h"

namespace convnet {

namespace {

namespace fs = std::filesystem;

// The folder must exist before it can hold the lock.
const std::string& created(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("output.dir '{}': cannot create: {}", dir, ec.message()));
  return dir;
}

// The run files present in `dir`.
std::vector<std::string> existing_run_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const std::string& name : run_file_names())
    if (name != "config.yaml" && fs::exists(dir / name, ec)) out.push_back(name);
  return out;
}

// write_file_atomic's temporaries ("last.safetensors.tmp.PID") of a run killed while writing.
void remove_stale_temporaries(const fs::path& dir) {
  for (const std::string& run_file : run_file_names()) remove_stale_temp_files((dir / run_file).string());
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void refuse_mixing_runs(const fs::path& dir, const std::vector<std::string>& found, const std::string& program) {
  const fs::path last = dir / "last.safetensors";
  const std::string resume =
      fs::exists(last) ? fmt::format("continue it with `{} train --resume {}`, ", program, last.string()) : "";
  throw ConfigError(fmt::format(
      "output.dir '{}' already holds a run ({}): {}choose another output.dir (--set output.dir=...), or pass "
      "--overwrite to delete that run and start over",
      dir.string(), joined(found), resume));
}

void delete_run_files(const fs::path& dir, const std::vector<std::string>& found) {
  spdlog::warn("--overwrite: deleting the previous run in '{}' ({})", dir.string(), joined(found));
  for (const std::string& name : run_file_names()) {
    std::error_code ec;
    fs::remove(dir / name, ec);
    if (ec) throw Error(fmt::format("--overwrite: cannot delete '{}': {}", (dir / name).string(), ec.message()));
  }
}

}  // namespace

const std::vector<std::string>& run_file_names() {
  static const std::vector<std::string> names = {"metrics.jsonl", "last.safetensors", "best.safetensors", "curves.svg",
                                                 "config.yaml"};
  return names;
}

RunFolder::RunFolder(const std::string& dir, RunStart start, const std::string& program) : lock_(created(dir)) {
  remove_stale_temporaries(dir);
  if (start == RunStart::resume) return;
  const std::vector<std::string> found = existing_run_files(dir);
  if (found.empty()) return;
  if (start == RunStart::fresh) refuse_mixing_runs(dir, found, program);
  delete_run_files(dir, found);
}

}  // namespace convnet
