#include "testing.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "fathom/checkpoint/safetensors.h"

using namespace fathom;
using namespace fathom::checkpoint;
namespace fs = std::filesystem;

namespace {

using Bytes = std::string;

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path dir;
  TempDir() {
    static int n = 0;
    dir = fs::temp_directory_path() /
          ("fathom_st_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  size_t entries() const { return size_t(std::distance(fs::directory_iterator(dir), {})); }
};

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream(path, std::ios::binary).write(b.data(), std::streamsize(b.size()));
}

Bytes le64(uint64_t n) {
  Bytes b(8, '\0');
  for (int i = 0; i < 8; ++i) b[i] = char(uint8_t(n >> (8 * i)));
  return b;
}

// A file laid out as the spec says, from a header and a data section given verbatim.
Bytes st_file(const Bytes& header, const Bytes& data) { return le64(header.size()) + header + data; }

// Loads `bytes` and expects an error naming the file and containing every one of `parts`.
void expect_load_error(const TempDir& tmp, const Bytes& bytes, std::vector<std::string> parts) {
  std::string path = tmp.file("bad.safetensors");
  write_bytes(path, bytes);
  try {
    load_safetensors(path);
    FAIL("no error for a file expected to fail with: " << parts[0]);
  } catch (const Error& e) {
    std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find(path) != std::string::npos);
    for (auto& p : parts) CHECK(msg.find(p) != std::string::npos);
  }
}

void expect_same(const Tensor& got, const Tensor& want) {
  REQUIRE(got.defined());
  CHECK(got.device().is_cpu());
  CHECK(got.dtype() == want.dtype());
  REQUIRE(got.shape() == want.shape());
  Tensor w = ops::contiguous(ops::to(want, Device::cpu()));
  if (w.nbytes() > 0) CHECK(std::memcmp(got.data_ptr(), w.data_ptr(), w.nbytes()) == 0);
}

const std::string kTensor1 = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";

}  // namespace

TEST_CASE("safetensors round-trips every dtype", "[checkpoint]") {
  TempDir tmp;
  std::map<std::string, Tensor> t;
  t["f32"] = randn({3, 4}, DType::f32);
  t["f64"] = randn({2, 5}, DType::f64);
  t["bf16"] = randn({7}, DType::bf16);
  t["f16"] = randn({2, 2, 2}, DType::f16);
  t["i32"] = from_vector(std::vector<int64_t>{-5, 0, 7, INT32_MAX}, {4}, DType::i32);
  t["i64"] = from_vector(std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX}, {2, 2}, DType::i64);
  t["u8"] = from_vector(std::vector<int64_t>{0, 1, 128, 255}, {4}, DType::u8);
  t["bool"] = from_vector(std::vector<int64_t>{1, 0, 0, 1, 1}, {5}, DType::boolean);
  std::string path = tmp.file("all.safetensors");
  save_safetensors(path, t);
  Bytes bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  CHECK(uint8_t(bytes[0]) % 8 == 0);  // header padded so the data section is 8-byte aligned
  auto got = load_safetensors(path);
  REQUIRE(got.size() == t.size());
  for (auto& [name, want] : t) {
    INFO(name);
    expect_same(got.at(name), want);
  }
}

TEST_CASE("safetensors writes non-contiguous, empty and scalar tensors", "[checkpoint]") {
  TempDir tmp;
  Tensor base = randn({4, 6});
  std::map<std::string, Tensor> t;
  t["transposed"] = ops::transpose(base, 0, 1);
  t["strided"] = testing::noncontiguous(randn({3, 5}, DType::bf16));
  t["narrowed"] = ops::narrow(base, 1, 2, 3);
  t["empty"] = zeros({0, 3});
  t["scalar"] = from_vector(std::vector<double>{3.5}, {}, DType::f64);
  REQUIRE(!t["transposed"].is_contiguous());
  std::string path = tmp.file("views.safetensors");
  save_safetensors(path, t);
  auto got = load_safetensors(path);
  for (auto& [name, want] : t) {
    INFO(name);
    expect_same(got.at(name), want);
  }
  CHECK(got.at("empty").shape() == Shape{0, 3});
  CHECK(got.at("scalar").dim() == 0);
  CHECK(got.at("scalar").item<double>() == 3.5);
}

TEST_CASE("safetensors keeps metadata and names that need JSON escapes", "[checkpoint]") {
  TempDir tmp;
  std::map<std::string, Tensor> t;
  const std::vector<std::string> names = {"quote\"d", "back\\slash", "caf\xC3\xA9.w",
                                          "emoji\xF0\x9F\x98\x80", "a/b.c", "__meta"};
  for (size_t i = 0; i < names.size(); ++i)
    t[names[i]] = full({2}, double(i), DType::f32);
  std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"multi\nline", "tab\there \"q\" \x01 \\"}, {"", "empty key"}};
  std::string path = tmp.file("names.safetensors");
  save_safetensors(path, t, meta);
  std::map<std::string, std::string> got_meta = {{"stale", "x"}};
  auto got = load_safetensors(path, &got_meta);
  CHECK(got_meta == meta);
  REQUIRE(got.size() == names.size());
  for (auto& n : names) expect_same(got.at(n), t.at(n));

  CHECK_THROWS_WITH(save_safetensors(path, {{"bad\nname", zeros({1})}}),
                    Catch::Contains("control character"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"", zeros({1})}}), Catch::Contains("non-empty"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"__metadata__", zeros({1})}}),
                    Catch::Contains("reserved"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"bad\xFF", zeros({1})}}),
                    Catch::Contains("not valid UTF-8"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"x", Tensor()}}), Catch::Contains("undefined"));
  // The failed saves left the earlier file alone.
  CHECK(load_safetensors(path).size() == names.size());
}

TEST_CASE("safetensors output is byte-exact to the spec", "[checkpoint]") {
  TempDir tmp;
  std::string path = tmp.file("tiny.safetensors");
  save_safetensors(path, {{"a", from_vector(std::vector<double>{1, 2}, {2})}}, {{"format", "pt"}});
  // 85 bytes of JSON padded with 3 spaces to 88 (0x58), as the Python library pads; keys in
  // serde order (__metadata__ first, then dtype, shape, data_offsets); 1.0f and 2.0f LE.
  const Bytes want = Bytes("\x58\0\0\0\0\0\0\0", 8) +
                     R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],)"
                     R"("data_offsets":[0,8]}}   )" +
                     Bytes("\x00\x00\x80\x3F\x00\x00\x00\x40", 8);
  CHECK(read_bytes(path) == want);

  // No tensors, no metadata: "{}" padded to 8.
  save_safetensors(path, {});
  CHECK(read_bytes(path) == Bytes("\x08\0\0\0\0\0\0\0{}      ", 16));
  CHECK(load_safetensors(path).empty());
}

TEST_CASE("safetensors reads a file laid out as the Python library writes it", "[checkpoint]") {
  TempDir tmp;
  // The Rust writer orders tensors by dtype alignment then name, so "w" (F64) precedes "b"
  // (I32) in both header and data; the header is padded with spaces to a multiple of 8.
  const Bytes header =
      R"({"__metadata__":{"framework":"torch"},"w":{"dtype":"F64","shape":[2],)"
      R"("data_offsets":[0,16]},"b":{"dtype":"I32","shape":[3],"data_offsets":[16,28]}}     )";
  REQUIRE(header.size() == 152);
  const Bytes data = Bytes("\0\0\0\0\0\0\xF0\x3F", 8) +      // 1.0
                     Bytes("\0\0\0\0\0\0\x04\xC0", 8) +      // -2.5
                     Bytes("\x01\0\0\0\xFF\xFF\xFF\xFF\x00\x01\0\0", 12);  // 1, -1, 256
  std::string path = tmp.file("py.safetensors");
  write_bytes(path, st_file(header, data));
  std::map<std::string, std::string> meta;
  auto got = load_safetensors(path, &meta);
  CHECK(meta == std::map<std::string, std::string>{{"framework", "torch"}});
  REQUIRE(got.size() == 2);
  CHECK(got.at("w").dtype() == DType::f64);
  CHECK(to_vector(got.at("w")) == std::vector<double>{1.0, -2.5});
  CHECK(got.at("b").dtype() == DType::i32);
  CHECK(to_vector(got.at("b")) == std::vector<double>{1, -1, 256});

  // \u escapes, surrogate pairs included, decode to UTF-8 names; whitespace is allowed.
  const Bytes h2 = "{ \"\\u00e9\\ud83d\\ude00\" : " + kTensor1 + " }\n";
  write_bytes(path, st_file(h2, Bytes(4, '\0')));
  got = load_safetensors(path);
  CHECK(got.count("\xC3\xA9\xF0\x9F\x98\x80") == 1);
}

TEST_CASE("safetensors refuses corrupt and hostile files with clear errors", "[checkpoint]") {
  TempDir tmp;
  const Bytes f4(4, '\0');
  auto one = [&](const std::string& entry) { return "{\"a\":" + entry + "}"; };

  SECTION("sizes") {
    expect_load_error(tmp, "", {"0 bytes, too short"});
    expect_load_error(tmp, Bytes(7, '\x01'), {"7 bytes, too short"});
    expect_load_error(tmp, le64(100) + "{}", {"header length 100 is larger than the 2 bytes"});
    expect_load_error(tmp, le64(uint64_t(1) << 63) + "{}",
                      {"header length 9223372036854775808 is larger"});
    // A sparse file big enough to hold the claimed header: refused by the limit, unread.
    std::string big = tmp.file("big.safetensors");
    write_bytes(big, le64(150'000'000));
    fs::resize_file(big, 200'000'000);
    CHECK_THROWS_WITH(load_safetensors(big), Catch::Contains("exceeds the limit"));
    CHECK_THROWS_WITH(load_safetensors(tmp.file("missing")),
                      Catch::Contains("cannot open: No such file"));
    CHECK_THROWS_WITH(load_safetensors(tmp.dir.string()), Catch::Contains("not a regular file"));
  }
  SECTION("invalid JSON") {
    expect_load_error(tmp, st_file(R"({"a":{"dtype":"F32")", ""), {"unexpected end of input"});
    expect_load_error(tmp, st_file("{} x", ""), {"invalid JSON at byte 3", "trailing characters"});
    expect_load_error(tmp, st_file(R"({"a\q":1})", ""), {"bad escape '\\q'"});
    expect_load_error(tmp, st_file(std::string(10000, '['), ""), {"nesting deeper than 64"});
    expect_load_error(tmp, st_file(R"({"\udc00":1})", ""), {"lone low surrogate"});
    expect_load_error(tmp, st_file(R"({"\ud800x":1})", ""), {"high surrogate not followed"});
    expect_load_error(tmp, st_file(R"({"\u12G4":1})", ""), {"bad hex digit"});
    expect_load_error(tmp, st_file("{\"\xC0\xAF\":1}", ""), {"invalid UTF-8"});
    expect_load_error(tmp, st_file("{\"a\nb\":1}", ""), {"unescaped control character"});
    expect_load_error(tmp, st_file(R"({"a":true})", ""), {"unexpected 't'"});
    expect_load_error(tmp, st_file(R"({"a":1,})", ""), {"expected a string key"});
    expect_load_error(tmp, st_file("[]", ""), {"header must be a JSON object"});
    std::string many = "[";
    for (int i = 0; i < (1 << 21); ++i) many += "0,";
    expect_load_error(tmp, st_file(many + "0]", ""), {"more than 2097152 values"});
    expect_load_error(tmp, st_file(one(kTensor1) + one(kTensor1), f4), {"trailing characters"});
  }
  SECTION("duplicate keys and bad numbers") {
    expect_load_error(tmp, st_file("{\"a\":" + kTensor1 + ",\"a\":" + kTensor1 + "}", f4),
                      {"duplicate key \"a\""});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,0]})"), ""),
                      {"in the entry \"a\"", "negative numbers"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"), f4),
                      {"non-integer number"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[1e3],"data_offsets":[0,4]})"), f4),
                      {"non-integer number"});
    expect_load_error(
        tmp, st_file(one(R"({"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]})"), f4),
        {"integer overflows int64"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[01],"data_offsets":[0,4]})"), f4),
                      {"leading zeros"});
  }
  SECTION("entries") {
    expect_load_error(tmp, st_file(one(R"({"dtype":"X9","shape":[1],"data_offsets":[0,4]})"), f4),
                      {"tensor \"a\"", "unknown dtype \"X9\""});
    expect_load_error(tmp, st_file(one(R"({"dtype":"I8","shape":[4],"data_offsets":[0,4]})"), f4),
                      {"tensor \"a\"", "dtype I8 is not supported"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]})"), f4),
                      {"dtype F8_E4M3 is not supported"});
    expect_load_error(tmp,
                      st_file(one(R"({"dtype":"F32","shape":[1099511627776,1099511627776],)"
                                  R"("data_offsets":[0,4]})"), f4),
                      {"tensor \"a\"", "overflows int64"});
    // Element count overflows even though a zero dim makes the byte size 0.
    expect_load_error(tmp,
                      st_file(one(R"({"dtype":"U8","shape":[0,4294967296,4294967296],)"
                                  R"("data_offsets":[0,0]})"), ""),
                      {"element count overflows"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), f4),
                      {"tensor \"a\"", "hold 4 bytes but shape [2] F32 needs 8"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), f4),
                      {"tensor \"a\"", "run past the end of the 4-byte data section"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), f4),
                      {"tensor \"a\"", "end 4 < begin 8"});
    expect_load_error(
        tmp,
        st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]})"), f4),
        {"integer overflows int64"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[1]})"), f4),
                      {"tensor \"a\"", "missing \"data_offsets\""});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1})"), f4),
                      {"unexpected key \"x\""});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), f4),
                      {"two integers"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"F32","shape":1,"data_offsets":[0,4]})"), f4),
                      {"shape must be an array"});
    expect_load_error(tmp, st_file(R"({"":)" + kTensor1 + "}", f4), {"empty name"});
    expect_load_error(tmp, st_file(R"({"__metadata__":{"k":1}})", ""), {"metadata \"k\"",
                                                                       "must be a string"});
    expect_load_error(tmp, st_file(one(R"({"dtype":"BOOL","shape":[2],"data_offsets":[0,2]})"),
                                   Bytes("\x01\x02", 2)),
                      {"BOOL element 1 is 2"});
  }
  SECTION("coverage of the data section") {
    const Bytes f8(8, '\0');
    expect_load_error(tmp,
                      st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f8),
                      {"tensor \"b\"", "overlaps tensor \"a\""});
    expect_load_error(tmp,
                      st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4),
                      {"overlaps"});
    expect_load_error(tmp,
                      st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f8),
                      {"gap of 4 bytes", "before tensor \"a\""});
    expect_load_error(tmp, st_file(one(kTensor1), f8),
                      {"data section is 8 bytes but the tensors cover only 4"});
    expect_load_error(tmp, st_file("{}", f4), {"cover only 0"});
  }
}

TEST_CASE("safetensors saves atomically", "[checkpoint]") {
  TempDir tmp;
  SECTION("into a directory that does not exist: an error and no file") {
    std::string path = tmp.file("no/such/dir/w.safetensors");
    CHECK_THROWS_WITH(save_safetensors(path, {{"a", zeros({2})}}),
                      Catch::Contains(path) && Catch::Contains("No such file or directory"));
    CHECK(!fs::exists(path));
    CHECK(tmp.entries() == 0);
  }
  SECTION("a failed rename leaves no temporary file") {
    fs::create_directories(tmp.dir / "taken" / "child");  // rename onto a non-empty dir fails
    std::string path = tmp.file("taken");
    CHECK_THROWS_WITH(save_safetensors(path, {{"a", zeros({2})}}),
                      Catch::Contains(path) && Catch::Contains("cannot rename"));
    CHECK(tmp.entries() == 1);
    CHECK(fs::is_directory(path));
  }
  SECTION("overwriting replaces the file whole") {
    std::string path = tmp.file("w.safetensors");
    save_safetensors(path, {{"big", randn({1000})}, {"other", zeros({3}, DType::i64)}},
                     {{"v", "1"}});
    auto size1 = fs::file_size(path);
    Tensor small = from_vector(std::vector<double>{7, 8}, {2});
    save_safetensors(path, {{"small", small}});
    CHECK(fs::file_size(path) < size1);
    std::map<std::string, std::string> meta;
    auto got = load_safetensors(path, &meta);
    CHECK(meta.empty());
    REQUIRE(got.size() == 1);
    expect_same(got.at("small"), small);
    CHECK(tmp.entries() == 1);  // no temporary file left next to it
  }
  SECTION("a relative path in the working directory") {
    auto old = fs::current_path();
    fs::current_path(tmp.dir);
    save_safetensors("rel.safetensors", {{"a", ones({2})}});
    fs::current_path(old);
    CHECK(load_safetensors(tmp.file("rel.safetensors")).count("a") == 1);
    CHECK(tmp.entries() == 1);
  }
}

TEST_CASE("safetensors saves CUDA tensors through the host", "[checkpoint][cuda]") {
  if (!testing::has_cuda()) return;
  TempDir tmp;
  Tensor host = randn({5, 3}, DType::bf16);
  Tensor dev = ops::transpose(ops::to(host, Device::cuda()), 0, 1);
  std::string path = tmp.file("cuda.safetensors");
  save_safetensors(path, {{"w", dev}});
  expect_same(load_safetensors(path).at("w"), ops::transpose(host, 0, 1));
}
