// Graceful stop on SIGINT / SIGTERM: the handler only records the signal; the training loop
// polls it between steps, so a step is never cut in half. SIGXFSZ (a file-size limit, ulimit -f)
// is ignored meanwhile, so a write over the limit fails with EFBIG and is reported as an Error
// naming the file, like a full disk, instead of killing the process.
#pragma once

namespace convnet {

class StopSignals {
 public:
  StopSignals();   // installs the handlers (and ignores SIGXFSZ)
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int received() const;  // 0 or the signal number
};

}  // namespace convnet
