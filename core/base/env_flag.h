// Boolean switches read from the environment (CONVNET_SYNC_CHECK, CONVNET_DETERMINISTIC, ...), all
// spelled the same way: "1" on, "0" off, unset gives the default. Anything else is a mistake the
// user should hear about, not a silent default.
#pragma once

namespace convnet {

// `value` is the variable's value (null when unset). Throws ConfigError naming the variable, its
// value and the accepted values when it is neither "0" nor "1".
bool parse_env_flag(const char* variable, const char* value, bool fallback);

// parse_env_flag on this process's environment.
bool env_flag(const char* variable, bool fallback);

}  // namespace convnet
