#pragma once
// fathom::Error is the one exception type: shape/dtype/device mismatches, bad indices, corrupt
// files, library failures. Messages name the op first, then the offending tensors, then the fix.
#include <sstream>
#include <stdexcept>
#include <string>

namespace fathom {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(concat(parts...));
}
}  // namespace detail
}  // namespace fathom

// Checks user input; stays on in every build type (unlike assert).
#define FATHOM_CHECK(cond, ...)                                  \
  do {                                                           \
    if (!(cond)) ::fathom::detail::fail(__VA_ARGS__);            \
  } while (0)
