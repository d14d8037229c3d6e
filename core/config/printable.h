// Config text shown in messages: a hostile file may hold control characters, invalid UTF-8 or a
// megabyte-long scalar, none of which belongs verbatim in a one-line error on a terminal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace convnet {

// True when `text` is valid UTF-8 without control characters (tab excepted).
bool is_printable_utf8(std::string_view text);

// `text` with control characters and bytes that are not valid UTF-8 written as \xNN, cut after
// `max_chars` characters with "... (N bytes)" appended.
std::string printable(std::string_view text, size_t max_chars = 60);

}  // namespace convnet
