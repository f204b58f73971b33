#pragma once
// A strict, small JSON reader for file headers we do not trust (safetensors). It knows only
// what such headers contain: objects, arrays, strings and non-negative integers. Everything
// else (floats, negatives, true/false/null, duplicate keys, invalid UTF-8, lone surrogates,
// nesting deeper than kMaxDepth, trailing garbage) is an error with the byte offset, so a
// hostile header can neither crash the reader nor be read two ways by two readers.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fathom::checkpoint::json {

struct Value {
  enum class Kind : uint8_t { object, array, string, integer };
  Kind kind = Kind::integer;
  uint64_t integer = 0;                                // Kind::integer, <= INT64_MAX
  std::string string;                                  // Kind::string, valid UTF-8
  std::vector<Value> array;                            // Kind::array
  std::vector<std::pair<std::string, Value>> object;   // Kind::object, in file order, unique keys

  // Out of line (json.cpp), where Value is complete: clang instantiates the vector of
  // pair<string, Value> members at the class's end otherwise, and fails on the incomplete pair.
  Value();
  Value(const Value&);
  Value(Value&&) noexcept;
  Value& operator=(const Value&);
  Value& operator=(Value&&) noexcept;
  ~Value();

  const char* kind_name() const;
};

// Recursion is bounded by this, so depth costs stack, never a stack overflow.
inline constexpr int kMaxDepth = 64;
// A parsed value costs ~100 bytes against as little as 2 bytes of text ("[],"), so the count is
// bounded too: a hostile 100 MB header cannot grow into gigabytes. 2M values is ~250k tensors,
// far beyond any real checkpoint file.
inline constexpr size_t kMaxValues = size_t(1) << 21;

// Parses `text` as one JSON value with optional whitespace around it. Throws fathom::Error
// with "<what>: invalid JSON at byte <k>: <reason>".
Value parse(std::string_view text, const std::string& what);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool valid_utf8(std::string_view s);
// `s` as a JSON string literal, quotes included; non-ASCII is written as is (like serde_json).
std::string quote(std::string_view s);

}  // namespace fathom::checkpoint::json
