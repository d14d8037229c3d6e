// Atomic file replacement: readers of `path` see either the old file or the complete new one,
// never a partial write, even if the process or the machine dies midway.
//
// Steps: write to `path + ".tmp.<pid>"` in the same directory, fsync it, close, rename over
// `path`, fsync the directory. Any failure removes the temporary file, leaves the previous file
// at `path` untouched and throws convnet::Error naming the path, the step and strerror(errno).
// Parent directories are not created: a missing directory is an error. Before writing, temporary
// files of `path` left by writers that were killed (remove_stale_temp_files) are removed.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace convnet {

// Writes the concatenation of `pieces` to `path` atomically (see above). Throws Error.
void write_file_atomic(const std::string& path, std::span<const std::string_view> pieces);

// Removes the files `path + ".tmp.<pid>"` in `path`'s directory whose pid is not a running process
// (what a writer killed between open and rename leaves behind), with a warning naming each; returns
// how many. Files of live processes (another writer at work) and of this process are kept; a file
// that cannot be removed is left with a warning.
int remove_stale_temp_files(const std::string& path);

// The step at which write_file_atomic fails on purpose, for tests of the failure paths.
enum class AtomicWriteFault {
  none,
  after_write,  // the temporary file is fully written, fsync fails (EIO)
  after_close,  // the temporary file is closed, rename fails (EIO)
};
// Test hook: makes every following write_file_atomic call fail at `fault` until reset to none.
void set_atomic_write_fault_for_testing(AtomicWriteFault fault);

}  // namespace convnet
