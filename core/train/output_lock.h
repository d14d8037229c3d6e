// One `convnet train` at a time per output folder: OUT/convnet.lock, held with flock(2) for the
// run's lifetime and holding "PID HOST" of its owner, so a second run into the same folder is
// refused (naming the owner) instead of interleaving metrics and checkpoints. flock is released
// by the kernel when its owner dies, even by SIGKILL: a lock file left behind by a dead process is
// taken over with a warning naming that process. Data-parallel runs lock from rank 0 only (the
// only rank that writes there).
#pragma once

#include <string>

namespace convnet {

class OutputDirLock {
 public:
  static constexpr const char* kFileName = "convnet.lock";

  // Takes the lock of the existing folder `dir`; throws Error naming the owner when a live
  // process holds it, or the path when the lock file cannot be created.
  explicit OutputDirLock(const std::string& dir);
  ~OutputDirLock();  // removes the lock file
  OutputDirLock(const OutputDirLock&) = delete;
  OutputDirLock& operator=(const OutputDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  // One attempt: true when this process holds the lock on the file now at path_.
  bool try_lock();
  std::string dir_, path_;
  int fd_ = -1;
};

}  // namespace convnet
