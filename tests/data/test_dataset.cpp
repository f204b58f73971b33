#include "data/data_testing.h"

#include "fathom/data/dataset.h"
#include "fathom/data/idx.h"

using namespace fathom;
using fathom::testing::numbered;

namespace {

// Examples via get() only, so get_batch is the default that stacks them.
struct Pairs : data::Dataset {
  int64_t size() const override { return 10; }
  data::Example get(int64_t i) const override {
    return {from_vector(std::vector<double>{double(i), -double(i)}, {2}),
            from_vector(std::vector<int64_t>{i}, {})};
  }
};

}  // namespace

TEST_CASE("TensorDataset: get, one-gather get_batch equal to stacked get(i), size errors", "[data]") {
  auto ds = numbered(20);
  CHECK(ds->size() == 20);
  data::Example e = ds->get(7);
  CHECK(to_vector(e.data) == std::vector<double>{7, 7.5, 7.25});
  CHECK(e.target.item<int64_t>() == 7);
  std::vector<int64_t> idx{3, 19, 0, 3};
  data::Batch fast = ds->get_batch(idx), stacked = ds->fathom::data::Dataset::get_batch(idx);
  CHECK(fast.data.shape() == Shape{4, 3});
  CHECK(fast.target.shape() == Shape{4});
  CHECK(stacked.data.shape() == fast.data.shape());
  CHECK(stacked.target.shape() == fast.target.shape());
  CHECK(to_vector(stacked.data) == to_vector(fast.data));
  CHECK(to_vector(stacked.target) == to_vector(fast.target));
  CHECK(ds->get_batch({}).data.shape() == Shape{0, 3});
  CHECK(ds->fathom::data::Dataset::get_batch({}).target.shape() == Shape{0});
  CHECK_THROWS_WITH(ds->get(20), Catch::Contains("index 20 is out of range for 20 examples"));
  CHECK_THROWS_WITH(ds->get_batch({5, 20}), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(data::TensorDataset(zeros({5, 3}), zeros({4})),
                    Catch::Contains("has 5 examples but targets") && Catch::Contains("first dims must match"));
  CHECK_THROWS_WITH(data::TensorDataset(zeros({5, 3}), zeros({})), Catch::Contains("leading example dim"));
}

TEST_CASE("Dataset::get_batch stacks get(i) and names examples that do not stack", "[data]") {
  Pairs s;
  data::Batch b = s.get_batch({4, 2});
  CHECK(b.data.shape() == Shape{2, 2});
  CHECK(to_vector(b.data) == std::vector<double>{4, -4, 2, -2});
  CHECK(to_vector(b.target) == std::vector<double>{4, 2});
  struct Ragged : data::Dataset {
    int64_t size() const override { return 3; }
    data::Example get(int64_t i) const override { return {zeros({i + 1}), zeros({})}; }
  } ragged;
  CHECK_THROWS_WITH(ragged.get_batch({0, 2}),
                    Catch::Contains("cannot stack the data of example 2 ([3] f32 cpu) with that of example 0"));
}

TEST_CASE("FashionMNIST is the IDX split as a TensorDataset", "[data]") {
  data::FashionMNIST test(data::kFashionMnistDir, false);
  CHECK(test.size() == 10000);
  CHECK(test.data().shape() == Shape{10000, 784});
  std::string dir = data::kFashionMnistDir;
  Tensor images = data::read_idx_images(dir + "/t10k-images-idx3-ubyte.gz");
  Tensor labels = data::read_idx_labels(dir + "/t10k-labels-idx1-ubyte.gz");
  Tensor idx = from_vector(std::vector<int64_t>{9999, 0}, {2});
  data::Batch b = test.get_batch({9999, 0});
  CHECK(to_vector(b.target) == to_vector(ops::index_select(labels, 0, idx)));
  CHECK(to_vector(b.data) == to_vector(ops::index_select(images, 0, idx)));
}
