// Reading a file a user names (a config, a data file) in one piece. Only regular files are read:
// a FIFO would block forever, a device such as /dev/zero never ends, a directory is not data;
// each is refused with a message saying what the path is. The size is bounded too, so a huge file
// is an error naming the limit rather than std::bad_alloc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace convnet {

// The whole contents of the regular file `path`. Throws Error "`what` 'path': ..." when it cannot
// be opened or read, is not a regular file, or holds more than `max_bytes` bytes. The type is
// checked on the opened descriptor, opened without blocking, so a FIFO cannot hang the open.
std::vector<uint8_t> read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& what);
std::string read_regular_file_text(const std::string& path, uint64_t max_bytes, const std::string& what);

// "1 MiB", "30000 bytes": a byte count for messages.
std::string byte_count_text(uint64_t bytes);

}  // namespace convnet
