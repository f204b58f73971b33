// Writes the seed corpus of fuzz_checkpoint into DIR: a real manifest.pb (as a file and as a
// payload), a real safetensors file and its JSON header, each behind its reader's mode byte.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <fathom.h>

using namespace fathom;
namespace fs = std::filesystem;

static std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

static void seed(const std::string& dir, const std::string& name, char mode, const std::string& bytes) {
  std::ofstream(dir + "/" + name, std::ios::binary) << mode << bytes;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 2;
  }
  try {
    const std::string out = argv[1], work = out + "/.work";
    fs::create_directories(work);
    checkpoint::RankState s;
    s.replicated["w"] = ones({2, 3});
    s.replicated["step"] = full({}, 7.0, DType::i64);
    s.replicated["mask"] = zeros({4}, DType::boolean);
    s.per_rank["rng"] = zeros({2}, DType::i64);
    {
      checkpoint::Checkpointer ckpt(work + "/ckpt", *comm::init().world,
                                    checkpoint::CheckpointerOptions().async(false));
      ckpt.save(7, s);
    }
    const std::string manifest = slurp(work + "/ckpt/step_00000007/manifest.pb");
    seed(out, "manifest_file", '\0', manifest);
    seed(out, "manifest_payload", '\1', manifest.substr(32));
    checkpoint::save_safetensors(work + "/m.safetensors", s.replicated, {{"format", "pt"}});
    const std::string st = slurp(work + "/m.safetensors");
    seed(out, "safetensors", '\2', st);
    uint64_t n = 0;  // the header's length, 8 bytes little-endian
    for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(st[size_t(i)])) << (8 * i);
    seed(out, "json", '\3', st.substr(8, size_t(n)));
    fs::remove_all(work);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_seeds: error: %s\n", e.what());
    return 1;
  }
}
