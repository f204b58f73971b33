// Reading a checkpoint directory, trusting nothing: the manifest is checked in full before
// any tensor is allocated, each data file's size must be the manifest's (so no allocation is
// larger than a file that exists), and every tensor's XXH3-64 must match. See io.h.
#include <algorithm>
#include <map>

#include "fathom/checkpoint/file_io.h"
#include "fathom/checkpoint/io.h"
#include "fathom/core/ops/factory.h"

namespace fathom::checkpoint::internal {

namespace {

constexpr size_t kChunk = size_t(8) << 20;

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

pb::Manifest read_manifest(const std::string& step_dir) {
  const std::string path = step_dir + "/" + kManifestName;
  const std::string where = "checkpoint '" + path + "'";
  FATHOM_CHECK(is_dir(step_dir), "checkpoint '", step_dir, "': ",
               exists(step_dir) ? "not a directory" : "does not exist");
  FATHOM_CHECK(exists(path), where, ": missing (the directory has no manifest, so it is not ",
               "a complete checkpoint)");
  const std::string bytes = read_small_file(path, kMaxManifestBytes, where);
  pb::Manifest m = parse_manifest(bytes, where);
  int64_t named = 0;
  if (parse_step_dir_name(base_name(step_dir), &named))
    FATHOM_CHECK(m.step() == named, where, ": the manifest is of step ", m.step(),
                 " but the directory is named for step ", named);
  return m;
}

nn::StateDict read_tensors(const std::string& step_dir, const pb::Manifest& m, pb::Kind kind,
                           int rank) {
  // The selected entries, grouped by file and in file order, so each file is read front to back.
  std::vector<const pb::TensorEntry*> todo;
  for (const pb::TensorEntry& e : m.tensors())
    if (e.kind() == kind && (kind != pb::PER_RANK || e.rank() == rank)) todo.push_back(&e);
  std::sort(todo.begin(), todo.end(), [](const pb::TensorEntry* a, const pb::TensorEntry* b) {
    return a->rank() != b->rank() ? a->rank() < b->rank() : a->offset() < b->offset();
  });

  nn::StateDict out;
  int open_rank = -1;
  Fd fd;
  std::string fwhere;
  for (const pb::TensorEntry* e : todo) {
    if (e->rank() != open_rank) {
      const std::string path = step_dir + "/" + e->file();  // validated: rank_<r>.bin
      fwhere = "checkpoint '" + path + "'";
      FATHOM_CHECK(exists(path), fwhere, ": missing (", entry_desc(*e), " is stored in it)");
      uint64_t size = 0;
      fd = open_regular(path, &size, fwhere);
      const uint64_t expect = m.files(e->rank()).size();
      FATHOM_CHECK(size == expect, fwhere, ": ", size, " bytes, but the manifest says ", expect,
                   size < expect ? " (truncated)" : " (bytes were appended)");
      open_rank = e->rank();
    }
    const std::string tw = fwhere + ": " + entry_desc(*e);
    DType dtype;
    from_pb(e->dtype(), &dtype);  // validated
    Tensor t = empty(Shape(e->shape().begin(), e->shape().end()), dtype);
    char* p = static_cast<char*>(t.data_ptr());
    Xxh3 h;
    for (uint64_t at = 0; at < e->length(); at += kChunk) {
      size_t n = size_t(std::min<uint64_t>(kChunk, e->length() - at));
      read_at(fd.get(), p + at, n, e->offset() + at, tw);
      h.update(p + at, n);
    }
    const uint64_t got = h.digest();
    FATHOM_CHECK(got == e->xxh3(), tw, " at bytes [", e->offset(), ", ",
                 e->offset() + e->length(), "): checksum mismatch (manifest ", hex64(e->xxh3()),
                 ", data ", hex64(got), "): the file is corrupt");
    if (dtype == DType::boolean) {
      // A bool byte other than 0/1 is undefined behaviour in C++ code that reads it.
      const uint8_t* b = static_cast<const uint8_t*>(t.data_ptr());
      for (uint64_t i = 0; i < e->length(); ++i)
        FATHOM_CHECK(b[i] <= 1, tw, ": bool element ", i, " is ", int(b[i]), ", not 0 or 1");
    }
    out.emplace(e->name(), std::move(t));
  }
  return out;
}

}  // namespace fathom::checkpoint::internal
