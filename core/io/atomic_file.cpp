#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "core/base/error.h"
#include "core/io/safetensors.h"

namespace convnet {

namespace {

std::atomic<AtomicWriteFault> g_fault{AtomicWriteFault::none};

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The pid of a temporary file name `base` + ".tmp.<pid>", or 0 when `name` is not one.
pid_t temp_file_pid(const std::string& name, const std::string& base) {
  const std::string prefix = base + ".tmp.";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return 0;
  pid_t pid = 0;
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size();
  const auto [ptr, ec] = std::from_chars(begin, end, pid);
  if (ec != std::errc() || ptr != end || pid <= 0) return 0;
  return pid;
}

bool process_is_gone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;  // EPERM: alive, another user's
}

// Owns the temporary file until it has been renamed into place.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_ && created_) ::unlink(path_.c_str());
  }

  void open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) fail("cannot create temporary file", errno);
    created_ = true;
  }
  void write(std::string_view piece) {
    const char* p = piece.data();
    size_t left = piece.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot write temporary file", errno);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  void sync() {
    if (g_fault.load() == AtomicWriteFault::after_write) fail("cannot fsync temporary file", EIO);
    if (::fsync(fd_) != 0) fail("cannot fsync temporary file", errno);
  }
  void close() {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close temporary file", errno);
  }
  void rename_to(const std::string& target) {
    if (g_fault.load() == AtomicWriteFault::after_close) fail("cannot rename temporary file", EIO);
    if (::rename(path_.c_str(), target.c_str()) != 0) fail("cannot rename temporary file", errno);
    renamed_ = true;
  }

 private:
  [[noreturn]] void fail(const char* what, int err) const {
    throw Error(fmt::format("{} '{}': {}", what, path_, std::strerror(err)));
  }

  std::string path_;
  int fd_ = -1;
  bool created_ = false;
  bool renamed_ = false;
};

void sync_directory(const std::string& dir, const std::string& target) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    throw Error(fmt::format("wrote '{}' but cannot open its directory to fsync: {}", target, std::strerror(errno)));
  // Some file systems cannot fsync a directory (EINVAL); the rename itself has still happened.
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) {
    throw Error(fmt::format("wrote '{}' but cannot fsync its directory: {}", target, std::strerror(err)));
  }
}

}  // namespace

int remove_stale_temp_files(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string base = base_name(path);
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(parent_directory(path), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const pid_t pid = temp_file_pid(name, base);
    if (pid == 0 || pid == ::getpid() || !process_is_gone(pid)) continue;
    std::error_code remove_error;
    if (fs::remove(it->path(), remove_error)) {
      spdlog::warn("removed '{}', left by a write of process {} that did not finish", it->path().string(), pid);
      ++removed;
    } else if (remove_error) {
      spdlog::warn("cannot remove the stale temporary file '{}': {}", it->path().string(), remove_error.message());
    }
  }
  return removed;
}

void set_atomic_write_fault_for_testing(AtomicWriteFault fault) {
  g_fault.store(fault);
}

void write_file_atomic(const std::string& path, std::span<const std::string_view> pieces) {
  if (path.empty() || path.back() == '/') throw Error(fmt::format("cannot write '{}': not a file path", path));
  remove_stale_temp_files(path);
  TempFile temp(fmt::format("{}.tmp.{}", path, ::getpid()));
  temp.open();
  for (std::string_view piece : pieces) temp.write(piece);
  temp.sync();
  temp.close();
  temp.rename_to(path);
  sync_directory(parent_directory(path), path);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string_view piece(text);
  write_file_atomic(path, std::span<const std::string_view>(&piece, 1));
}

}  // namespace convnet
