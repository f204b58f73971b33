#pragma once
// Grad mode: whether ops record the graph. Thread-local, like PyTorch's, so a data-loader or
// communication thread never sees another thread's NoGradGuard.
namespace fathom {
namespace autograd {

bool is_grad_enabled();
void set_grad_enabled(bool enabled);

// Turns recording off for a scope (inference, optimizer updates, weight init).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(is_grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Turns recording back on inside a NoGradGuard scope.
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(is_grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace autograd

using autograd::EnableGradGuard;
using autograd::NoGradGuard;

}  // namespace fathom
