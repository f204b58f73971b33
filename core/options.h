#pragma once
// FATHOM_ARG(T, name) declares an option with a chainable setter and a getter, like PyTorch's
// TORCH_ARG: `FATHOM_ARG(bool, bias) = true;` then LinearOptions(5, 2).bias(false).
#ifndef FATHOM_ARG
#define FATHOM_ARG(T, name)                   \
 public:                                      \
  auto& name(const T& new_##name) {           \
    this->name##_ = new_##name;               \
    return *this;                             \
  }                                           \
  const T& name() const { return this->name##_; } \
                                              \
 private:                                     \
  T name##_
#endif
