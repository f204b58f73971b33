#include "fathom/core/dtype.h"

#include "fathom/core/error.h"

namespace fathom {

size_t itemsize(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::bf16: case DType::f16: return 2;
    case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
    case DType::boolean: return "bool";
  }
  return "?";
}

DType parse_dtype(const std::string& s) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64,
                  DType::u8, DType::boolean})
    if (s == dtype_name(t)) return t;
  detail::fail("unknown dtype '", s, "': expected one of f32, f64, bf16, f16, i32, i64, u8, bool");
}

DType promote(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {
    switch (t) {
      case DType::boolean: return 0;
      case DType::u8: return 1;
      case DType::i32: return 2;
      case DType::i64: return 3;
      case DType::bf16: case DType::f16: return 4;
      case DType::f32: return 5;
      case DType::f64: return 6;
    }
    return 0;
  };
  if (is_half(a) && is_half(b)) return DType::f32;
  return rank(a) >= rank(b) ? a : b;
}

f16::f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag > 0x7f800000u) { bits = uint16_t(sign | 0x7e00u); return; }  // NaN
  if (mag >= 0x477ff000u) { bits = uint16_t(sign | 0x7c00u); return; }  // overflow -> inf
  if (mag < 0x38800000u) {  // result is subnormal (or zero): shift the mantissa with rounding
    if (mag < 0x33000000u) { bits = uint16_t(sign); return; }
    uint32_t exp = mag >> 23, mant = (mag & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp;  // 14 + (112 - exp) + 1 ... shifts so exponent -14 lines up
    uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    bits = uint16_t(sign | half);
    return;
  }
  uint32_t h = ((mag - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
  uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into inf: correct
  bits = uint16_t(sign | h);
}

f16::operator float() const {
  uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu, mant = bits & 0x3ffu, u;
  if (exp == 0x1f) u = sign | 0x7f800000u | (mant << 13);
  else if (exp != 0) u = sign | ((exp + 112) << 23) | (mant << 13);
  else if (mant == 0) u = sign;
  else {  // subnormal: normalise
    int e = -1;
    do { ++e; mant <<= 1; } while (!(mant & 0x400u));
    u = sign | uint32_t(112 - e) << 23 | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace fathom
