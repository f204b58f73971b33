#include "fathom/data/text.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "fathom/core/checked.h"
#include "fathom/core/memory.h"
#include "fathom/core/ops/factory.h"

namespace fathom::data {

static std::vector<uint8_t> read_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  FATHOM_CHECK(fs::exists(path, ec), "cannot open '", path, "': file not found",
               path == kDefaultCorpus ? " (it comes from the Debian package fortunes: "
                                        "apt-get install fortunes)"
                                      : "");
  // Opening a directory succeeds on Linux; only the read fails (EISDIR), and std::filebuf
  // reports that by throwing std::ios_base::failure. Refused here with its name instead.
  FATHOM_CHECK(!fs::is_directory(path, ec), "cannot read '", path,
               "': it is a directory, not a text file");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  FATHOM_CHECK(f, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) out.insert(out.end(), buf, buf + n);
  FATHOM_CHECK(!std::ferror(f.get()), "reading '", path, "': ", std::strerror(errno));
  return out;
}

TextDataset::TextDataset(const std::string& path) : TextDataset(read_file(path), path) {}

TextDataset::TextDataset(std::vector<uint8_t> bytes, std::string name)
    : bytes_(std::move(bytes)), name_(std::move(name)) {
  FATHOM_CHECK(!bytes_.empty(), "TextDataset '", name_, "' is empty: there is nothing to train on");
}

std::pair<Tensor, Tensor> TextDataset::batch(int64_t B, int64_t T, Generator& gen) const {
  FATHOM_CHECK(B > 0 && T > 0, "TextDataset::batch: B and T must be positive, got ", B, ", ", T);
  // A window is T + 1 bytes (x and y shifted by one); written as size() - 1 >= T so that a huge
  // T cannot overflow. size() >= 1: the constructor refuses empty text.
  FATHOM_CHECK(size() - 1 >= T, "TextDataset '", name_, "' has ", size(),
               " bytes, too few for windows of ", uint64_t(T) + 1, " (T + 1)");
  int64_t tokens = 0;
  FATHOM_CHECK(mul_fits(B, T, &tokens), "TextDataset::batch: B x T = ", B, " x ", T,
               " overflows int64");
  memory::Scope ledger(memory::Category::other);  // data, not activations (docs/memory.md)
  Tensor x = empty({B, T}, DType::i64), y = empty({B, T}, DType::i64);
  int64_t *xp = x.data<int64_t>(), *yp = y.data<int64_t>();
  PhiloxState s = gen.reserve(uint64_t(B) * 4);
  uint64_t span = uint64_t(size() - T);
  for (int64_t b = 0; b < B; ++b) {
    Philox4 r = philox(s.seed, s.stream, s.offset + uint64_t(b));
    int64_t start = int64_t((uint64_t(r.v[0]) << 32 | r.v[1]) % span);
    for (int64_t t = 0; t < T; ++t) {
      xp[b * T + t] = bytes_[start + t];
      yp[b * T + t] = bytes_[start + t + 1];
    }
  }
  return {x, y};
}

double TextDataset::unigram_entropy() const {
  double counts[256] = {};
  for (uint8_t c : bytes_) counts[c] += 1;
  double h = 0, n = double(bytes_.size());
  for (double c : counts)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

}  // namespace fathom::data
