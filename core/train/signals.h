// Graceful stop on SIGINT / SIGTERM: the handler only records the signal; the training loop
// polls it between steps, so a step is never cut in half.
#pragma once

namespace convnet {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int received() const;  // 0 or the signal number
};

}  // namespace convnet
