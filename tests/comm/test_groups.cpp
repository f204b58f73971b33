// Sub-groups: split by color and key, split by a list of ranks, nesting, and collectives on
// sub-groups running while the parent is busy.
#include "comm_testing.h"

using namespace fathom;
using namespace fathom::testing;

TEST_CASE("split(color, key): even and odd ranks, reversed order", "[comm]") {
  auto& w = world();
  int color = w.rank() % 2;
  auto g = w.split(color, -w.rank());  // key -rank: the highest world rank becomes rank 0
  REQUIRE(g);
  int members = (w.size() + 1 - color) / 2;
  CHECK(g->size() == members);
  std::vector<int> mine;
  for (int r = w.size() - 1; r >= 0; --r)
    if (r % 2 == color) mine.push_back(r);
  for (int i = 0; i < g->size(); ++i) CHECK(g->world_rank(i) == mine[size_t(i)]);
  CHECK(g->world_rank(g->rank()) == w.rank());
  CHECK(g->name().rfind("world/", 0) == 0);

  Tensor x = full({5}, double(w.rank()));
  g->allreduce(x)->wait();
  double want = 0;
  for (int r : mine) want += r;
  CHECK(to_vector(x) == std::vector<double>(5, want));

  // Broadcast from the group's rank 0 (the highest world rank of this color).
  Tensor y = full({2}, double(w.rank()));
  g->broadcast(y, 0)->wait();
  CHECK(to_vector(y) == std::vector<double>(2, double(mine[0])));
}

TEST_CASE("split(color < 0) leaves a rank out", "[comm]") {
  auto& w = world();
  bool out = w.size() > 1 && w.rank() == w.size() - 1;
  auto g = w.split(out ? -1 : 0, w.rank(), "all_but_last");
  if (out) {
    CHECK(g == nullptr);
    return;
  }
  REQUIRE(g);
  CHECK(g->name() == "all_but_last");
  CHECK(g->size() == std::max(1, w.size() - 1));
  Tensor x = ones({3});
  g->allreduce(x)->wait();
  CHECK(to_vector(x) == std::vector<double>(3, double(g->size())));
}

TEST_CASE("split(ranks) follows the list's order; nested splits", "[comm]") {
  auto& w = world();
  std::vector<int> ranks;
  for (int r = w.size() - 1; r >= 0; r -= 2) ranks.push_back(r);  // e.g. {3, 1} of 4
  auto g = w.split(ranks);
  auto it = std::find(ranks.begin(), ranks.end(), w.rank());
  if (it == ranks.end()) {
    CHECK(g == nullptr);
  } else {
    REQUIRE(g);
    CHECK(g->rank() == int(it - ranks.begin()));
    CHECK(g->size() == int(ranks.size()));
    Tensor x = full({1}, double(w.rank()));
    Tensor all = zeros({g->size()});
    g->allgather(all, x)->wait();
    std::vector<double> want(ranks.begin(), ranks.end());
    CHECK(to_vector(all) == want);

    // A group of one made from a sub-group still works.
    auto solo = g->split(g->rank(), 0);
    REQUIRE(solo);
    CHECK(solo->size() == 1);
    Tensor y = full({4}, 3.0);
    solo->allreduce(y)->wait();
    CHECK(to_vector(y) == std::vector<double>(4, 3.0));
  }
  CHECK_THROWS_WITH(w.split(std::vector<int>{0, 0}), Catch::Contains("listed twice"));
  CHECK_THROWS_WITH(w.split(std::vector<int>{w.size()}), Catch::Contains("not a rank of the group"));
}

TEST_CASE("sub-groups and the parent run at the same time", "[comm]") {
  auto& w = world();
  auto g = w.split(w.rank() % 2, w.rank());
  REQUIRE(g);
  // Each group has its own comm thread: the world's and the sub-group's queues drain in
  // parallel, in each one's own order.
  std::vector<comm::WorkPtr> works;
  std::vector<Tensor> a, b;
  for (int i = 0; i < 8; ++i) {
    a.push_back(full({1000}, 1.0));
    b.push_back(full({1000}, 2.0));
    works.push_back(w.allreduce(a.back()));
    works.push_back(g->allreduce(b.back()));
  }
  comm::wait_all(works);
  for (auto& t : a) CHECK(to_vector(t)[999] == w.size());
  for (auto& t : b) CHECK(to_vector(t)[0] == 2.0 * g->size());
}

TEST_CASE("a destroyed sub-group leaves the parent usable", "[comm]") {
  auto& w = world();
  for (int round = 0; round < 3; ++round) {
    auto g = w.split(0, w.rank());
    Tensor x = ones({2});
    g->allreduce(x)->wait();
    CHECK(to_vector(x)[0] == w.size());
  }
  Tensor y = ones({2});
  w.allreduce(y)->wait();
  CHECK(to_vector(y)[1] == w.size());
}
