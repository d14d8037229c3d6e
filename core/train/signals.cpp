#include "core/train/signals.h"

#include <atomic>
#include <csignal>

namespace convnet {

namespace {
std::atomic<int> g_signal{0};
extern "C" void record_signal(int sig) {
  g_signal.store(sig);
}
struct sigaction g_old_int, g_old_term, g_old_xfsz;
}  // namespace

StopSignals::StopSignals() {
  g_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGXFSZ, &ignore, &g_old_xfsz);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGXFSZ, &g_old_xfsz, nullptr);
}

int StopSignals::received() const {
  return g_signal.load();
}

}  // namespace convnet
