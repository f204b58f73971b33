#include "fathom/checkpoint/json.h"

#include <cstdio>
#include <unordered_set>

#include "fathom/core/error.h"

namespace fathom::checkpoint::json {

Value::Value() = default;
Value::Value(const Value&) = default;
Value::Value(Value&&) noexcept = default;
Value& Value::operator=(const Value&) = default;
Value& Value::operator=(Value&&) noexcept = default;
Value::~Value() = default;

const char* Value::kind_name() const {
  switch (kind) {
    case Kind::object: return "an object";
    case Kind::array: return "an array";
    case Kind::string: return "a string";
    case Kind::integer: return "an integer";
  }
  return "?";
}

namespace {

// Length of the UTF-8 sequence at s[i], or 0 when it is malformed (RFC 3629 table 3-7).
size_t utf8_seq(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return i + k < s.size() ? uint8_t(s[i + k]) : 0u; };
  auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    unsigned c = at(k);
    return i + k < s.size() && c >= lo && c <= hi;
  };
  unsigned c = at(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // no UTF-16 surrogates
  if (c >= 0xE1 && c <= 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& what) : s_(text), what_(what) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    // The top-level key names the tensor for the reader of the message.
    detail::fail(what_, ": invalid JSON at byte ", i_,
                 top_key_ ? " (in the entry " + quote(*top_key_) + ")" : std::string(), ": ", why);
  }
  bool eof() const { return i_ >= s_.size(); }
  char peek() const { return eof() ? '\0' : s_[i_]; }
  void skip_ws() {
    while (!eof() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (eof()) fail(std::string("unexpected end of input, expected '") + c + "'");
    if (s_[i_] != c) fail(std::string("expected '") + c + "', found " + describe(s_[i_]));
    ++i_;
  }
  static std::string describe(char c) {
    unsigned u = uint8_t(c);
    if (u >= 0x21 && u < 0x7F) return std::string("'") + c + "'";
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", u);
    return std::string("byte ") + buf;
  }

  Value parse_value(int depth) {
    if (depth >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (++count_ > kMaxValues) fail("more than " + std::to_string(kMaxValues) + " values");
    if (eof()) fail("unexpected end of input, expected a value");
    char c = s_[i_];
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    Value v;
    if (c == '"') {
      v.kind = Value::Kind::string;
      v.string = parse_string();
      return v;
    }
    if (c == '-') fail("negative numbers are not allowed here");
    if (c >= '0' && c <= '9') {
      v.kind = Value::Kind::integer;
      v.integer = parse_integer();
      return v;
    }
    fail("unexpected " + describe(c) + " (only objects, arrays, strings and integers are allowed)");
  }

  Value parse_object(int depth) {
    Value v;
    v.kind = Value::Kind::object;
    std::unordered_set<std::string> seen;
    expect('{');
    skip_ws();
    if (peek() == '}') { ++i_; return v; }
    for (;;) {
      skip_ws();
      if (peek() != '"') {
        if (eof()) fail("unexpected end of input, expected a key");
        fail("expected a string key, found " + describe(peek()));
      }
      size_t key_at = i_;
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        i_ = key_at;
        fail("duplicate key " + quote(key));
      }
      skip_ws();
      expect(':');
      skip_ws();
      if (depth == 0) top_key_ = &key;
      Value item = parse_value(depth + 1);
      if (depth == 0) top_key_ = nullptr;
      v.object.emplace_back(std::move(key), std::move(item));
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      expect('}');
      return v;
    }
  }

  Value parse_array(int depth) {
    Value v;
    v.kind = Value::Kind::array;
    expect('[');
    skip_ws();
    if (peek() == ']') { ++i_; return v; }
    for (;;) {
      skip_ws();
      v.array.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      expect(']');
      return v;
    }
  }

  uint64_t parse_integer() {
    size_t start = i_;
    uint64_t n = 0;
    while (!eof() && s_[i_] >= '0' && s_[i_] <= '9') {
      unsigned d = unsigned(s_[i_] - '0');
      // INT64_MAX bounds every integer so callers can hold it in int64_t unchecked.
      if (n > (uint64_t(INT64_MAX) - d) / 10) { i_ = start; fail("integer overflows int64"); }
      n = n * 10 + d;
      ++i_;
    }
    if (i_ - start > 1 && s_[start] == '0') { i_ = start; fail("leading zeros in a number"); }
    if (peek() == '.' || peek() == 'e' || peek() == 'E')
      fail("non-integer number (fractions and exponents are not allowed here)");
    return n;
  }

  unsigned hex4() {
    if (s_.size() - i_ < 4) { i_ = s_.size(); fail("unexpected end of input in a \\u escape"); }
    unsigned v = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      char c = s_[i_];
      unsigned d;
      if (c >= '0' && c <= '9') d = unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') d = unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = unsigned(c - 'A' + 10);
      else fail("bad hex digit " + describe(c) + " in a \\u escape");
      v = v * 16 + d;
    }
    return v;
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (eof()) fail("unexpected end of input inside a string");
      unsigned c = uint8_t(s_[i_]);
      if (c == '"') { ++i_; return out; }
      if (c < 0x20) fail("unescaped control character " + describe(char(c)) + " in a string");
      if (c == '\\') {
        ++i_;
        if (eof()) fail("unexpected end of input in an escape");
        char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate in a \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (s_.substr(i_, 2) != "\\u") fail("high surrogate not followed by a low one");
              i_ += 2;
              uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate not followed by a low one");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default: --i_; fail("bad escape '\\" + std::string(1, e) + "'");
        }
        continue;
      }
      size_t n = utf8_seq(s_, i_);
      if (n == 0) fail("invalid UTF-8 in a string");
      out.append(s_.substr(i_, n));
      i_ += n;
    }
  }

  std::string_view s_;
  const std::string& what_;
  size_t i_ = 0;
  size_t count_ = 0;
  const std::string* top_key_ = nullptr;
};

}  // namespace

Value parse(std::string_view text, const std::string& what) {
  return Parser(text, what).parse_document();
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_seq(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned c = uint8_t(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace fathom::checkpoint::json
