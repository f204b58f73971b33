#include "testing.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "fathom/data/idx.h"
#include "fathom/data/sampler.h"
#include "fathom/data/text.h"

using namespace fathom;

namespace {
std::string temp_file(const std::string& name, const std::vector<uint8_t>& bytes) {
  auto p = std::filesystem::temp_directory_path() / ("fathom_test_" + name);
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return p.string();
}
}  // namespace

TEST_CASE("Fashion-MNIST loads from Debian's package with validated shapes", "[data]") {
  auto ds = data::load_fashion_mnist();
  CHECK(ds.train.images.shape() == Shape{60000, 784});
  CHECK(ds.train.labels.shape() == Shape{60000});
  CHECK(ds.test.images.shape() == Shape{10000, 784});
  auto lab = to_vector(ds.test.labels);
  std::set<double> classes(lab.begin(), lab.end());
  CHECK(classes.size() == 10);
  CHECK(*classes.begin() == 0);
  CHECK(*classes.rbegin() == 9);
  CHECK(ops::amax(ds.train.images).item<float>() == 1.0f);
  CHECK(ops::amin(ds.train.images).item<float>() == 0.0f);
}

TEST_CASE("IDX reader rejects missing, truncated and mislabeled files", "[data]") {
  CHECK_THROWS_WITH(data::load_fashion_mnist("/nonexistent"),
                    Catch::Contains("/nonexistent/train-images-idx3-ubyte.gz") &&
                        Catch::Contains("dataset-fashion-mnist"));
  // Labels file claiming 5 labels but holding 3.
  std::string trunc = temp_file("trunc", {0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3});
  CHECK_THROWS_WITH(data::read_idx_labels(trunc), Catch::Contains("header promises 5 data bytes"));
  std::string magic = temp_file("magic", {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 7});
  CHECK_THROWS_WITH(data::read_idx_labels(magic), Catch::Contains("not an IDX file of 1-d"));
  CHECK(to_vector(data::read_idx_images(magic)) == std::vector<double>{double(7.0f / 255.0f)});
  CHECK_THROWS_WITH(data::read_idx_images(temp_file("tiny", {1, 2})), Catch::Contains("only 2 bytes"));
}

TEST_CASE("DistributedSampler: permutations, sharding, exact resume", "[data]") {
  data::DistributedSampler a(103, 10, 0, 1, true, 7);
  CHECK(a.batches_per_epoch() == 10);
  std::set<int64_t> seen;
  for (int b = 0; b < 10; ++b)
    for (int64_t i : a.next()) seen.insert(i);
  CHECK(seen.size() == 100);  // no repeats within an epoch, last 3 dropped
  CHECK(a.position() == data::LoaderPosition{1, 0});
  // The Philox order of (seed 7, epoch 0) is the one BatchLoader produced: recipes and their
  // results are unchanged.
  data::DistributedSampler b(103, 10, 0, 1, true, 7);
  auto first = b.next();
  CHECK(first == std::vector<int64_t>{50, 6, 95, 90, 40, 16, 92, 3, 36, 1});
  // Epochs differ; the same seed reproduces.
  b.set_epoch(1);
  CHECK(b.next() != first);
  data::DistributedSampler c(103, 10, 0, 1, true, 7);
  CHECK(c.next() == first);
  CHECK(data::DistributedSampler(103, 10, 0, 1, true, 8).next() != first);
  // Resume from a saved position replays the same stream.
  data::LoaderPosition p = c.position();
  auto next1 = c.next();
  c.set_position(p);
  CHECK(c.next() == next1);
  CHECK(c.indices(p) == next1);
  // Two ranks' shards together are the single-process batch, in order.
  data::DistributedSampler r0(103, 10, 0, 2, true, 7), r1(103, 10, 1, 2, true, 7);
  auto s0 = r0.next(), s1 = r1.next();
  CHECK(s0.size() == 5);
  s0.insert(s0.end(), s1.begin(), s1.end());
  CHECK(s0 == first);
  CHECK_THROWS_WITH(data::DistributedSampler(100, 10, 0, 3), Catch::Contains("divide by the world size 3"));
  CHECK_THROWS_WITH(data::DistributedSampler(100, 10, 3, 2), Catch::Contains("rank 3 is not in a world of 2"));
  CHECK_THROWS_WITH(data::DistributedSampler(5, 10), Catch::Contains("larger than the dataset (5 samples)"));
  CHECK_THROWS_WITH(c.set_position({0, 10}), Catch::Contains("outside an epoch of 10"));
}

TEST_CASE("TextDataset: shifted windows, reproducible, entropy", "[data]") {
  std::string text = "abracadabra, abracadabra, abracadabra!";
  data::TextDataset ds(std::vector<uint8_t>(text.begin(), text.end()), "spell");
  Generator g(3);
  PhiloxState s = g.state();
  auto [x, y] = ds.batch(4, 8, g);
  CHECK(x.shape() == Shape{4, 8});
  auto xv = to_vector(x), yv = to_vector(y);
  for (int b = 0; b < 4; ++b)
    for (int t = 0; t < 7; ++t) CHECK(yv[b * 8 + t] == xv[b * 8 + t + 1]);
  g.set_state(s);
  CHECK(to_vector(ds.batch(4, 8, g).first) == xv);
  // Entropy of a two-symbol uniform text is log 2.
  data::TextDataset ab(std::vector<uint8_t>{'a', 'b', 'a', 'b'}, "ab");
  CHECK(ab.unigram_entropy() == Approx(std::log(2.0)));
  CHECK_THROWS_WITH(ds.batch(1, 100, g), Catch::Contains("too few for windows of 101"));
  CHECK_THROWS_WITH(data::TextDataset("/no/such/file"), Catch::Contains("'/no/such/file'"));
}
