// What every fuzz target shares: the readers under test take file paths, so each input is
// written to a scratch file first; and the contract they are held to. An input must either load
// or be rejected with convnet::Error (ConfigError is one). Any other exception escapes
// LLVMFuzzerTestOneInput, which ends in std::terminate: libFuzzer reports it as a crash, like a
// sanitizer finding, a leak, an allocation over -malloc_limit_mb or an input over -timeout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/error.h"

namespace convnet::fuzz {

// A private temporary directory for the life of the process (removed at exit), in /dev/shm when
// there is one, so rewriting a file per input costs no disk I/O.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  // `name` below the directory (subfolders are created); the file is created or truncated.
  std::string write(const std::string& name, std::string_view bytes) const;
  std::string path(const std::string& name) const { return root_ + "/" + name; }

 private:
  std::string root_;
};

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `read`; a convnet::Error is a correct rejection of a bad input, anything else propagates.
template <class Read>
void loads_or_rejects(Read&& read) {
  try {
    read();
  } catch (const Error&) {
  }
}

// Runs a check on what a reader accepted: an Error from it is the reader's bug, not a rejection.
template <class Check>
void must_hold(const std::string& what, Check&& check);

// Reports a broken invariant of a reader that accepted its input and aborts (a libFuzzer crash).
[[noreturn]] void invariant_failed(const std::string& what);

// Logging off: a reader's warnings for millions of inputs are noise. Every target links this
// library, whose static initialiser calls it, so no target needs an LLVMFuzzerInitialize for it.
void quiet_logging();

template <class Check>
void must_hold(const std::string& what, Check&& check) {
  try {
    check();
  } catch (const Error& e) {
    invariant_failed(what + ": " + e.what());
  }
}

}  // namespace convnet::fuzz
