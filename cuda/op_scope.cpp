#include "cuda/op_scope.h"

namespace convnet::cuda {

namespace {
thread_local const OpChecks* current_op = nullptr;
}  // namespace

OpContext::OpContext(const OpChecks& checks) noexcept : previous_(current_op) {
  current_op = &checks;
}

OpContext::~OpContext() {
  current_op = previous_;
}

std::string current_op_description() {
  return current_op ? current_op->describe() : std::string();
}

}  // namespace convnet::cuda
