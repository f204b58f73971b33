#pragma once
// Element types. bf16 and f16 are stored as 16-bit patterns; CPU kernels widen them to f32.
#include <cstdint>
#include <cstring>
#include <string>

namespace fathom {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, boolean };

// Shorthands in PyTorch's spelling: fathom::kFloat32 etc.
inline constexpr DType kFloat32 = DType::f32, kFloat64 = DType::f64, kBFloat16 = DType::bf16,
                       kFloat16 = DType::f16, kInt32 = DType::i32, kInt64 = DType::i64,
                       kUInt8 = DType::u8, kBool = DType::boolean;

size_t itemsize(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...
DType parse_dtype(const std::string& s);  // throws on unknown names
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16;
}
inline bool is_half(DType t) { return t == DType::bf16 || t == DType::f16; }
// Type of a binary op's result (float wins over int, wider float wins, bf16+f16 -> f32).
DType promote(DType a, DType b);

// bf16: the upper half of an IEEE f32; conversion rounds to nearest even, NaN stays NaN.
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) { bits = uint16_t((u >> 16) | 0x40); return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = uint16_t(u >> 16);
  }
  operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// IEEE binary16, round to nearest even, with subnormals, inf and NaN.
struct f16 {
  uint16_t bits = 0;
  f16() = default;
  explicit f16(float f);
  operator float() const;
};

// The element type of each DType, for templated kernels.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };

// What CPU kernels compute in: f32 for the half types, the type itself otherwise.
template <class T> struct acc_type { using type = T; };
template <> struct acc_type<bf16> { using type = float; };
template <> struct acc_type<f16> { using type = float; };
template <class T> using acc_t = typename acc_type<T>::type;

}  // namespace fathom
