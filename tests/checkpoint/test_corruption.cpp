// A damaged, hostile or half-written checkpoint is detected with an error naming the file and
// tensor, and load_latest falls back to the previous one on every rank. Rank 0 does the
// damage between two barriers; every rank then loads.
#include <sys/stat.h>

#include <functional>

#include "ckpt_testing.h"
#include "fathom/checkpoint/format.h"
#include "fathom/checkpoint/io.h"

using namespace fathom;
using namespace fathom::testing;
using checkpoint::Checkpointer;
using checkpoint::CheckpointerOptions;
namespace pb = fathom::checkpoint::pb;
namespace ci = fathom::checkpoint::internal;

namespace {

const pb::TensorEntry& find_entry(const pb::Manifest& m, const std::string& name, int kind, int rank) {
  for (auto& e : m.tensors())
    if (e.name() == name && e.kind() == kind && (kind != pb::PER_RANK || e.rank() == rank)) return e;
  FAIL("no entry " << name);
  return m.tensors(0);
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::string b = read_text(path);
  REQUIRE(offset < b.size());
  b[offset] = char(b[offset] ^ 0x10);
  write_text(path, b);
}

// A manifest rewritten with a valid frame: only the field checks stand between it and the reader.
void rewrite_manifest(const std::string& step_dir, const std::function<void(pb::Manifest&)>& edit) {
  const std::string path = step_dir + "/manifest.pb";
  pb::Manifest m = ci::parse_manifest(read_text(path), path);
  edit(m);
  std::string payload;
  REQUIRE(m.SerializeToString(&payload));
  write_text(path, ci::frame(ci::FrameKind::manifest, payload));
}

struct Damage {
  const char* what;
  std::function<void(const std::string& step_dir, const pb::Manifest& m, int world)> apply;
  std::vector<std::string> expect;  // parts of the error
};

std::string rank_file(int r) { return "rank_" + std::to_string(r) + ".bin"; }

}  // namespace

TEST_CASE("checkpointer detects damage and falls back to the previous checkpoint", "[checkpointer][ranks]") {
  const int n = world().size(), last = n - 1;
  const std::string last_bin = rank_file(last);
  std::vector<Damage> damages = {
      {"truncated data file",
       [](const std::string& d, const pb::Manifest& m, int) {
         fs::resize_file(d + "/rank_0.bin", m.files(0).size() / 2);
       },
       {"rank_0.bin", "(truncated)"}},
      {"bytes appended to a data file",
       [](const std::string& d, const pb::Manifest&, int) {
         std::ofstream(d + "/rank_0.bin", std::ios::binary | std::ios::app) << "x";
       },
       {"rank_0.bin", "(bytes were appended)"}},
      {"flipped bit in a replicated tensor",
       [](const std::string& d, const pb::Manifest& m, int) {
         auto& e = find_entry(m, "big", pb::REPLICATED, 0);
         flip_byte(d + "/" + e.file(), e.offset() + 12345);
       },
       {"tensor \"big\" (replicated)", "checksum mismatch", "the file is corrupt"}},
      {"flipped bit in the last rank's own tensor",
       [](const std::string& d, const pb::Manifest& m, int world) {
         auto& e = find_entry(m, "rng.f32", pb::PER_RANK, world - 1);
         flip_byte(d + "/" + e.file(), e.offset() + 3);
       },
       {"rank " + std::to_string(last) + ": ", last_bin,
        "tensor \"rng.f32\" (per_rank of rank " + std::to_string(last) + ")", "checksum mismatch"}},
      {"flipped bit in the manifest",
       [](const std::string& d, const pb::Manifest&, int) {
         flip_byte(d + "/manifest.pb", 40);
       },
       {"manifest.pb", "checksum mismatch"}},
      {"missing rank file",
       [](const std::string& d, const pb::Manifest&, int world) {
         fs::remove(d + "/rank_" + std::to_string(world - 1) + ".bin");
       },
       {last_bin, "missing"}},
      {"missing manifest",
       [](const std::string& d, const pb::Manifest&, int) { fs::remove(d + "/manifest.pb"); },
       {"manifest.pb", "missing", "not a complete checkpoint"}},
      {"a FIFO instead of a data file",
       [](const std::string& d, const pb::Manifest&, int) {
         fs::remove(d + "/rank_0.bin");
         REQUIRE(::mkfifo((d + "/rank_0.bin").c_str(), 0600) == 0);
       },
       {"rank_0.bin", "not a regular file"}},
      {"hostile: a file size the disk does not hold",
       [](const std::string& d, const pb::Manifest&, int) {
         // Self-consistent: 2^40 bytes claimed, in a file said to be 2^41 bytes.
         rewrite_manifest(d, [](pb::Manifest& m) {
           m.mutable_files(0)->set_size(uint64_t(1) << 41);
           auto* e = m.add_tensors();
           e->set_name("huge");
           e->set_kind(pb::REPLICATED);
           e->set_rank(0);
           e->set_dtype(pb::U8);
           e->add_shape(int64_t(1) << 40);
           e->set_file("rank_0.bin");
           e->set_offset(uint64_t(1) << 40);
           e->set_length(uint64_t(1) << 40);
         });
       },
       {"rank_0.bin", "bytes, but the manifest says 2199023255552"}},
      {"hostile: an offset past the end",
       [](const std::string& d, const pb::Manifest&, int) {
         rewrite_manifest(d, [](pb::Manifest& m) {
           for (auto& e : *m.mutable_tensors())
             if (e.name() == "big") e.set_offset(~uint64_t(0) - 8);
         });
       },
       {"manifest.pb", "tensor \"big\" (replicated)", "run past the end of rank_"}},
      {"hostile: a shape whose size overflows",
       [](const std::string& d, const pb::Manifest&, int) {
         rewrite_manifest(d, [](pb::Manifest& m) {
           auto& e = *m.mutable_tensors(0);
           e.clear_shape();
           for (int i = 0; i < 3; ++i) e.add_shape(int64_t(1) << 31);
         });
       },
       {"manifest.pb", "is too large"}},
      {"hostile: a length that is not the shape's",
       [](const std::string& d, const pb::Manifest&, int) {
         rewrite_manifest(d, [](pb::Manifest& m) {
           for (auto& e : *m.mutable_tensors())
             if (e.name() == "big") e.set_length(e.length() * 2);
         });
       },
       {"tensor \"big\" (replicated)", "needs 262144"}},
      {"hostile: a data file outside the checkpoint",
       [](const std::string& d, const pb::Manifest&, int) {
         rewrite_manifest(d, [](pb::Manifest& m) { m.mutable_tensors(0)->set_file("../../etc/passwd"); });
       },
       {"\"../../etc/passwd\" is not one of the rank_<r>.bin files"}},
      {"hostile: overlapping tensors",
       [](const std::string& d, const pb::Manifest&, int) {
         rewrite_manifest(d, [](pb::Manifest& m) {
           uint64_t big = 0;
           for (auto& e : m.tensors())
             if (e.name() == "big") big = e.offset();
           for (auto& e : *m.mutable_tensors())
             if (e.name() == "model.f32.w") {
               e.set_rank(0);
               e.set_file("rank_0.bin");
               e.set_offset(big + 64);
             }
         });
       },
       {"overlaps"}},
      {"hostile: a huge world size",
       [](const std::string& d, const pb::Manifest&, int) {
         rewrite_manifest(d, [](pb::Manifest& m) { m.set_world_size(1 << 30); });
       },
       {"world size 1073741824 is not in [1, "}},
      {"wrong format version (frame)",
       [](const std::string& d, const pb::Manifest&, int) {
         const std::string path = d + "/manifest.pb";
         std::string b = read_text(path);
         uint32_t v = 2;
         std::memcpy(b.data() + 8, &v, 4);
         ci::Xxh3 h;  // a valid checksum: the version itself must be refused
         h.update(b.data(), 24);
         h.update(b.data() + 32, b.size() - 32);
         uint64_t sum = h.digest();
         std::memcpy(b.data() + 24, &sum, 8);
         write_text(path, b);
       },
       {"manifest.pb", "format version 2, but this build of Fathom reads version 1"}},
      {"wrong format version (manifest field)",
       [](const std::string& d, const pb::Manifest&, int) {
         rewrite_manifest(d, [](pb::Manifest& m) { m.set_format_version(7); });
       },
       {"manifest format version 7"}},
  };

  for (const Damage& dmg : damages) {
    INFO("damage: " << dmg.what);
    SharedDir dir;
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(false));
    ckpt.save(1, make_state(1, world().rank()));
    ckpt.save(2, make_state(2, world().rank()));
    const std::string step2 = dir / "step_00000002";
    if (world().rank() == 0) dmg.apply(step2, ci::read_manifest(step2), n);
    sync_ranks();
    auto l = ckpt.load_latest();
    REQUIRE(l);
    CHECK(l->step == 1);
    expect_same(l->replicated, make_state(1, world().rank()).replicated);
    expect_same(l->per_rank, make_state(1, world().rank()).per_rank);
    REQUIRE(l->skipped.size() == 1);
    INFO("skipped: " << l->skipped[0]);
    CHECK(l->skipped[0].rfind("step_00000002: rank", 0) == 0);
    CHECK_THAT(l->skipped[0], Catch::Contains(step2));
    for (auto& part : dmg.expect) CHECK_THAT(l->skipped[0], Catch::Contains(part));
    // load() of the damaged one is an error on every rank, with the same reasons.
    try {
      ckpt.load(step2);
      FAIL("load of a damaged checkpoint succeeded");
    } catch (const Error& e) {
      for (auto& part : dmg.expect) CHECK_THAT(e.what(), Catch::Contains(part));
    }
  }
}

TEST_CASE("checkpointer ignores stale, empty and garbage directories", "[checkpointer][ranks]") {
  SharedDir dir;
  const int rank = world().rank();
  {
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(false).keep(0));
    ckpt.save(1, make_state(1, rank));
    ckpt.save(2, make_state(2, rank));
  }
  const std::string stale = dir / ".tmp.step_00000009.12345";
  if (rank == 0) {
    // A killed save of step 9 (complete-looking, even), an empty step dir, garbage, a step dir
    // whose manifest is another step's, and names that are not step dirs at all.
    fs::copy(dir / "step_00000002", stale);
    fs::create_directory(dir / "step_00000003");
    fs::create_directory(dir / "step_00000004");
    write_text(dir / "step_00000004/manifest.pb", std::string(100, 'G'));
    write_text(dir / "step_00000004/rank_0.bin", "garbage");
    fs::copy(dir / "step_00000001", dir / "step_00000005");
    write_text(dir / "step_00000006", "a file, not a directory");
    fs::create_directory(dir / "step_7");
    fs::create_directory(dir / "notes");
  }
  sync_ranks();
  {
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(false).keep(0));
    auto l = ckpt.load_latest();
    REQUIRE(l);
    CHECK(l->step == 2);
    expect_same(l->per_rank, make_state(2, rank).per_rank);
    REQUIRE(l->skipped.size() == 4);
    CHECK_THAT(l->skipped[0], Catch::StartsWith("step_00000006:") && Catch::Contains("not a directory"));
    CHECK_THAT(l->skipped[1], Catch::StartsWith("step_00000005:") &&
                                  Catch::Contains("the manifest is of step 1 but the directory is named for step 5"));
    CHECK_THAT(l->skipped[2], Catch::StartsWith("step_00000004:") &&
                                  Catch::Contains("not a Fathom checkpoint manifest"));
    CHECK_THAT(l->skipped[3], Catch::StartsWith("step_00000003:") &&
                                  Catch::Contains("no manifest, so it is not a complete checkpoint"));
    // Rank 0's constructor removed the stale temporary directory.
    CHECK_FALSE(fs::exists(stale));
    // A save goes on from there; retention does not count the broken ones.
    ckpt.save(10, make_state(10, rank));
    CHECK(ckpt.load_latest()->step == 10);
  }
  sync_ranks();
}

TEST_CASE("checkpointer: no valid checkpoint at all is an error, not a fresh start", "[checkpointer][ranks]") {
  SharedDir dir;
  {
    Checkpointer ckpt(dir.path, world(), CheckpointerOptions().async(false));
    ckpt.save(1, make_state(1, world().rank()));
  }
  if (world().rank() == 0) flip_byte(dir / "step_00000001/manifest.pb", 33);
  sync_ranks();
  Checkpointer ckpt(dir.path, world());
  CHECK_THROWS_WITH(ckpt.load_latest(),
                    Catch::Contains("no valid checkpoint in '" + dir.path + "'") &&
                        Catch::Contains("step_00000001: rank") && Catch::Contains("checksum mismatch"));
}
