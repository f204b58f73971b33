#pragma once
// FATHOM_ARG(T, name) declares an option with a chainable setter and a getter, like PyTorch's
// TORCH_ARG: `FATHOM_ARG(bool, bias) = true;` then LinearOptions(5, 2).bias(false).
// It lives in core so that every layer's options (nn modules, optimizers, DDP) share one style.
#define FATHOM_ARG(T, name) FATHOM_ARG_NOTE(T, name, (void)0)

// FATHOM_ARG_NOTE also runs the statement `note` in the setter. Optimizer options use it to
// remember which options were set, so a parameter group overrides only what it names.
#define FATHOM_ARG_NOTE(T, name, note)            \
 public:                                          \
  auto& name(const T& new_##name) {               \
    this->name##_ = new_##name;                   \
    note;                                         \
    return *this;                                 \
  }                                               \
  const T& name() const { return this->name##_; } \
                                                  \
 private:                                         \
  T name##_
