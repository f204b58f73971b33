// parallel::Mesh: Megatron's rank order over every factorisation of the world, the groups'
// members, and the errors for sizes and models that do not fit.
#include "testing.h"

#include "fathom/comm/comm.h"
#include "fathom/parallel/mesh.h"

using namespace fathom;
using namespace fathom::testing;
using Catch::Matchers::Contains;

namespace {

struct Sizes {
  int dp, pp, tp;
};

std::vector<Sizes> factorisations(int w) {
  std::vector<Sizes> out;
  for (int dp = 1; dp <= w; ++dp)
    for (int pp = 1; pp <= w; ++pp)
      if (w % (dp * pp) == 0) out.push_back({dp, pp, w / (dp * pp)});
  return out;
}

}  // namespace

TEST_CASE("Mesh puts tp fastest, then dp, then pp, with one group per axis", "[parallel][mesh]") {
  auto& world = *comm::init().world;
  int w = world.size(), me = world.rank();
  for (Sizes s : factorisations(w)) {
    INFO("dp " << s.dp << " pp " << s.pp << " tp " << s.tp);
    parallel::Mesh mesh(world, s.dp, s.pp, s.tp);
    // Megatron's formula, written out.
    CHECK(me == mesh.pp_rank() * s.dp * s.tp + mesh.dp_rank() * s.tp + mesh.tp_rank());
    CHECK(mesh.world_rank() == me);
    CHECK(mesh.world_size() == w);
    CHECK(mesh.tp_group()->size() == s.tp);
    CHECK(mesh.dp_group()->size() == s.dp);
    CHECK(mesh.pp_group()->size() == s.pp);
    CHECK(mesh.mp_group()->size() == s.pp * s.tp);
    parallel::MeshCoord c = mesh.coord();
    // Each group holds exactly the ranks that differ only on its axis, ordered along it.
    for (int i = 0; i < s.tp; ++i)
      CHECK(mesh.tp_group()->world_rank(i) == mesh.rank_of({c.dp, c.pp, i}));
    for (int i = 0; i < s.dp; ++i)
      CHECK(mesh.dp_group()->world_rank(i) == mesh.rank_of({i, c.pp, c.tp}));
    for (int i = 0; i < s.pp; ++i)
      CHECK(mesh.pp_group()->world_rank(i) == mesh.rank_of({c.dp, i, c.tp}));
    for (int i = 0; i < s.pp * s.tp; ++i) {
      parallel::MeshCoord o = parallel::Mesh::coord_of(mesh.mp_group()->world_rank(i), s.dp, s.pp, s.tp);
      CHECK(o.dp == c.dp);
    }
    // The groups work: a sum over tp of the tp ranks is 0 + 1 + ... + tp - 1.
    Tensor t = from_vector(std::vector<double>{double(mesh.tp_rank())}, {1});
    mesh.tp_group()->allreduce(t)->wait();
    CHECK(to_vector(t)[0] == s.tp * (s.tp - 1) / 2);
  }
}

TEST_CASE("Mesh coordinates round-trip through rank_of", "[parallel][mesh]") {
  for (int r = 0; r < 24; ++r) {
    parallel::MeshCoord c = parallel::Mesh::coord_of(r, 3, 2, 4);
    CHECK(parallel::Mesh::rank_of(c, 3, 2, 4) == r);
  }
  // rank 13 of dp=3 pp=2 tp=4: 13 = 1 * 12 + 0 * 4 + 1
  parallel::MeshCoord c = parallel::Mesh::coord_of(13, 3, 2, 4);
  CHECK((c.pp == 1 && c.dp == 0 && c.tp == 1));
  CHECK_THROWS_WITH(parallel::Mesh::coord_of(24, 3, 2, 4), Contains("rank 24 is outside"));
  CHECK_THROWS_WITH(parallel::Mesh::rank_of({3, 0, 0}, 3, 2, 4), Contains("outside the mesh"));
}

TEST_CASE("Mesh refuses sizes that do not multiply to the world or are not positive", "[parallel][mesh]") {
  auto& world = *comm::init().world;
  int w = world.size();
  CHECK_THROWS_WITH(parallel::Mesh(world, w, 1, 2),
                    Contains("dp=" + std::to_string(w) + " x pp=1 x tp=2 = " +
                             std::to_string(2 * w) + " ranks") &&
                        Contains("has " + std::to_string(w)));
  CHECK_THROWS_WITH(parallel::Mesh(world, 0, 1, w), Contains("must all be positive"));
  CHECK_THROWS_WITH(parallel::Mesh(world, -1, -1, w), Contains("dp=-1 pp=-1"));
}

TEST_CASE("Mesh::check_model names every number that does not split", "[parallel][mesh]") {
  nn::GPTConfig c;
  c.vocab_size = 50257;
  c.n_head = 6;
  c.n_embd = 48;
  c.n_layer = 3;
  CHECK_NOTHROW(parallel::Mesh::check_model(c, 3, 1));
  CHECK_THROWS_WITH(parallel::Mesh::check_model(c, 1, 4),
                    Contains("n_head 6 is not divisible by tp 4") &&
                        Contains("vocab_size 50257 is not divisible by tp 4") &&
                        Contains("use vocab_size 50260"));
  CHECK_THROWS_WITH(parallel::Mesh::check_model(c, 2, 1), Contains("n_layer 3 is not divisible by pp 2"));
  c.vocab_size = 64;
  c.n_embd = 6;
  c.n_head = 1;
  // 4 * 6 = 24 does not split over 16 ranks (nor do 1 head or 64 / 16 = 4 ... which does)
  CHECK_THROWS_WITH(parallel::Mesh::check_model(c, 1, 16),
                    Contains("4 * n_embd = 24 is not divisible by tp 16") &&
                        !Contains("vocab_size 64 is not"));
  auto& world = *comm::init().world;
  parallel::Mesh mesh(world, 1, 1, world.size());
  c.n_head = 3;
  c.n_embd = 48;
  CHECK_THROWS_WITH(mesh.check_model(c), Contains("n_head 3 is not divisible by tp"));
}
