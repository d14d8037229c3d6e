#include "core/train/output_lock.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "core/base/error.h"

namespace convnet {

namespace {

std::string host_name() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "unknown-host";
  return name.data();
}

// The "PID HOST" a lock file holds (empty when its owner had not written it yet).
std::string read_owner(int fd) {
  std::array<char, 300> text{};
  const ssize_t n = ::pread(fd, text.data(), text.size() - 1, 0);
  std::string owner = n > 0 ? std::string(text.data(), static_cast<size_t>(n)) : "";
  while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
  return owner;
}

std::string describe_owner(const std::string& owner) {
  if (owner.empty()) return "a process that has not written its pid yet";
  const size_t space = owner.find(' ');
  if (space == std::string::npos) return "pid " + owner;
  return fmt::format("pid {} on {}", owner.substr(0, space), owner.substr(space + 1));
}

}  // namespace

OutputDirLock::OutputDirLock(const std::string& dir) : dir_(dir), path_(dir + "/" + kFileName) {
  // A file unlinked by its previous owner between our open and our flock is not the lock any more:
  // try again on the new one.
  for (int attempt = 0; attempt < 10; ++attempt)
    if (try_lock()) break;
  if (fd_ < 0) throw Error(fmt::format("cannot take the lock '{}': it keeps being replaced", path_));
  const std::string previous = read_owner(fd_);
  if (!previous.empty())
    spdlog::warn("taking over the lock '{}' left by {}, which is no longer running", path_, describe_owner(previous));
  const std::string owner = fmt::format("{} {}\n", ::getpid(), host_name());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, owner.data(), owner.size(), 0) != static_cast<ssize_t>(owner.size())) {
    const int err = errno;
    ::unlink(path_.c_str());
    ::close(fd_);
    throw Error(fmt::format("cannot write the lock file '{}': {}", path_, std::strerror(err)));
  }
}

bool OutputDirLock::try_lock() {
  const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot create the lock file '{}': {}", path_, std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string owner = read_owner(fd);
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw Error(fmt::format(
          "output.dir '{}' is in use by another convnet train ({}, lock file '{}'): wait for it to finish, stop it, "
          "or choose another output.dir",
          dir_, describe_owner(owner), path_));
    throw Error(fmt::format("cannot lock '{}': {}", path_, std::strerror(err)));
  }
  struct stat held {
  }, named{};
  if (::fstat(fd, &held) != 0 || ::stat(path_.c_str(), &named) != 0 || held.st_ino != named.st_ino ||
      held.st_dev != named.st_dev) {
    ::close(fd);
    return false;
  }
  fd_ = fd;
  return true;
}

OutputDirLock::~OutputDirLock() {
  ::unlink(path_.c_str());  // while still holding it, so no one locks the file we remove
  ::close(fd_);
}

}  // namespace convnet
