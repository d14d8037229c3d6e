#include "core/base/regular_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/base/error.h"

namespace convnet {

namespace {

std::string kind_of_mode(mode_t mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Closes the descriptor on every path out of read_regular_file.
class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

template <class Bytes>
Bytes read_bounded(const std::string& path, uint64_t max_bytes, const std::string& what) {
  const std::string named = fmt::format("{} '{}'", what, path);
  // O_NONBLOCK: opening a FIFO without a writer would otherwise block before fstat could refuse it.
  const Descriptor fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) throw Error(fmt::format("cannot open {}: {}", named, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw Error(fmt::format("cannot examine {}: {}", named, std::strerror(errno)));
  if (const std::string kind = kind_of_mode(st.st_mode); !kind.empty())
    throw Error(fmt::format("{}: is {}, expected a regular file", named, kind));
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    throw Error(fmt::format("{}: {} bytes, more than the limit of {} for a {}", named, st.st_size,
                            byte_count_text(max_bytes), what));
  // Read to the end rather than st_size bytes (the file may grow; files in /proc report size 0),
  // at most one byte past the limit: that byte says the file is too large.
  const size_t cap = static_cast<size_t>(max_bytes) + 1;
  Bytes bytes;
  bytes.resize(static_cast<size_t>(st.st_size) + 1);
  size_t filled = 0;
  while (filled < cap) {
    if (filled == bytes.size()) bytes.resize(std::min(cap, std::max<size_t>(bytes.size() * 2, 1 << 14)));
    const ssize_t n = ::read(fd.get(), bytes.data() + filled, bytes.size() - filled);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(fmt::format("cannot read {}: {}", named, std::strerror(errno)));
    if (n == 0) break;
    filled += static_cast<size_t>(n);
  }
  if (filled > max_bytes)
    throw Error(fmt::format("{}: more than the limit of {} for a {}", named, byte_count_text(max_bytes), what));
  bytes.resize(filled);
  return bytes;
}

}  // namespace

std::vector<uint8_t> read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& what) {
  return read_bounded<std::vector<uint8_t>>(path, max_bytes, what);
}

std::string read_regular_file_text(const std::string& path, uint64_t max_bytes, const std::string& what) {
  return read_bounded<std::string>(path, max_bytes, what);
}

std::string byte_count_text(uint64_t bytes) {
  constexpr uint64_t kMiB = uint64_t{1} << 20, kGiB = uint64_t{1} << 30;
  if (bytes >= kGiB && bytes % kGiB == 0) return fmt::format("{} GiB", bytes / kGiB);
  if (bytes >= kMiB && bytes % kMiB == 0) return fmt::format("{} MiB", bytes / kMiB);
  return fmt::format("{} bytes", bytes);
}

}  // namespace convnet
