#include "fathom/parallel/ddp.h"

#include <algorithm>
#include <cstring>

#include "fathom/autograd/engine.h"
#include "fathom/core/phase.h"
#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/meta.h"
#include "fathom/comm/comm.h"
#include "fathom/core/memory.h"
#include "fathom/core/ops/elementwise.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/trace.h"

namespace fathom::parallel {

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<nn::Module> module,
                                                 std::shared_ptr<comm::ProcessGroup> group,
                                                 DDPOptions options)
    : module_(std::move(module)), group_(std::move(group)), o_(std::move(options)) {
  FATHOM_CHECK(module_ && group_, "DistributedDataParallel: needs a module and a process group");
  FATHOM_CHECK(is_floating(o_.grad_dtype()), "DistributedDataParallel: grad_dtype must be floating "
               "point, got ", dtype_name(o_.grad_dtype()));
  FATHOM_CHECK(!o_.compressor() || o_.grad_dtype() == DType::f32, "DistributedDataParallel: ",
               o_.compressor() ? o_.compressor()->name() : "", " compression needs grad_dtype f32");
  FATHOM_CHECK(o_.bucket_cap_mb() > 0 && o_.first_bucket_cap_mb() > 0,
               "DistributedDataParallel: bucket caps must be positive");
  for (auto& [name, t] : module_->named_parameters())
    if (t.requires_grad()) params_.push_back({name, t});
  FATHOM_CHECK(!params_.empty(), "DistributedDataParallel: the module has no parameter that requires grad");
  for (const Param& p : params_)
    FATHOM_CHECK(p.tensor.device() == params_[0].tensor.device(), "DistributedDataParallel: "
                 "parameters on different devices: '", params_[0].name, "' ", params_[0].tensor.desc(),
                 " and '", p.name, "' ", p.tensor.desc());

  // Every rank must hold the same parameters and use the same settings; then all start from
  // rank 0's values. Checked here, each differing setting named with every rank's value:
  // later the buckets' sizes and dtypes would differ and the first step would fail with a
  // less telling message (or, before comm's agreement check, corrupt memory).
  int64_t total = 0, dtype_mask = 0;
  for (const Param& p : params_) total += p.tensor.numel(), dtype_mask |= int64_t(1) << int(p.tensor.dtype());
  constexpr int kName = 3;  // the compressor's name, up to 24 characters, as int64s
  constexpr int kFields = 4 + kName;
  std::vector<int64_t> mine_v = {int64_t(params_.size()), total, int64_t(o_.grad_dtype()), dtype_mask};
  {
    std::string name = o_.compressor() ? o_.compressor()->name() : "none";
    char buf[8 * kName] = {};
    std::memcpy(buf, name.data(), std::min(name.size(), sizeof buf - 1));
    for (int i = 0; i < kName; ++i) {
      int64_t v;
      std::memcpy(&v, buf + 8 * i, 8);
      mine_v.push_back(v);
    }
  }
  Device dev = params_[0].tensor.device();
  Tensor mine = ops::to(from_vector(mine_v, {kFields}), dev);
  Tensor all = empty({kFields * int64_t(group_->size())}, {DType::i64, dev});
  group_->allgather(all, mine)->wait();
  std::vector<int64_t> got(size_t(all.numel()));
  std::memcpy(got.data(), ops::to(all, Device::cpu()).data_ptr(), got.size() * sizeof(int64_t));
  auto dtypes = [](int64_t mask) {
    std::string s;
    for (int d = 0; d < 63; ++d)
      if (mask >> d & 1) {
        if (!s.empty()) s += '+';
        s += dtype_name(DType(d));
      }
    return s;
  };
  auto name_at = [&](int r) {
    char buf[8 * kName + 1] = {};
    std::memcpy(buf, &got[size_t(r * kFields + 4)], 8 * kName);
    return std::string(buf);
  };
  std::string bad;
  auto field = [&](const char* what, int i, auto show) {
    std::vector<std::string> per_rank;
    for (int r = 0; r < group_->size(); ++r) per_rank.push_back(show(r, got[size_t(r * kFields + i)]));
    bad += comm::describe_disagreement(what, per_rank);
  };
  auto number = [](int, int64_t v) { return std::to_string(v); };
  field("parameters", 0, number);
  field("parameter values", 1, number);
  field("grad dtype", 2, [](int, int64_t v) { return std::string(dtype_name(DType(v))); });
  field("parameter dtypes", 3, [&](int, int64_t v) { return dtypes(v); });
  field("compression", 4, [&](int r, int64_t) { return name_at(r); });  // all kName words
  FATHOM_CHECK(bad.empty(), "DistributedDataParallel: the ranks of group '", group_->name(),
               "' differ (this is rank ", group_->rank(), "):", bad,
               "\nEvery rank must build the same model with the same DDP options.");
  {
    NoGradGuard no_grad;
    std::vector<comm::WorkPtr> works;
    for (const Param& p : params_) works.push_back(group_->broadcast(p.tensor, 0));
    for (auto& [name, b] : module_->named_buffers()) works.push_back(group_->broadcast(b, 0));
    comm::wait_all(works);
  }

  std::vector<int> order;
  for (int i = int(params_.size()) - 1; i >= 0; --i) order.push_back(i);
  build_buckets(order);
  for (int i = 0; i < int(params_.size()); ++i)
    params_[i].hook = autograd::register_post_accumulate_hook(
        params_[i].tensor, [this, i](const Tensor&) { on_grad_ready(i); });
}

DistributedDataParallel::~DistributedDataParallel() {
  for (Param& p : params_)
    if (p.hook >= 0) autograd::remove_hook(p.tensor, p.hook);
}

void DistributedDataParallel::build_buckets(const std::vector<int>& order) {
  buckets_.clear();
  const double elt = double(itemsize(o_.grad_dtype()));
  Device dev = params_[0].tensor.device();
  // Rounded up to whole groups of 4 for the 2:4 compressor; sharded, to 4 x world, so every
  // rank's block is as large as the others' and itself whole groups of 4. The padding stays 0.
  const int64_t align = zero_stage_ ? 4 * int64_t(group_->size()) : 4;
  Bucket cur;
  int64_t numel = 0;
  auto flush = [&] {
    cur.numel = (numel + align - 1) / align * align;
    memory::Scope tag(memory::Category::gradients);
    if (zero_stage_ != 2) cur.buffer = zeros({cur.numel}, {o_.grad_dtype(), dev});  // ZeRO-2: grad_buffer()
    cur.pending = int(cur.params.size());
    buckets_.push_back(std::move(cur));
    cur = Bucket();
    numel = 0;
  };
  for (int idx : order) {
    Param& p = params_[idx];
    double cap = (buckets_.empty() ? o_.first_bucket_cap_mb() : o_.bucket_cap_mb()) * 1048576.0;
    if (!cur.params.empty() && double(numel + p.tensor.numel()) * elt > cap) flush();
    p.bucket = int(buckets_.size());
    p.offset = numel;
    cur.params.push_back(idx);
    numel += p.tensor.numel();
  }
  if (!cur.params.empty()) flush();
  next_launch_ = 0;
}

Tensor DistributedDataParallel::slot(const Param& p) const {
  return ops::view(ops::narrow(buckets_[p.bucket].buffer, 0, p.offset, p.tensor.numel()),
                   p.tensor.shape());
}

double DistributedDataParallel::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - step_start_)
      .count();
}

void DistributedDataParallel::sync_buffers() {
  NoGradGuard no_grad;
  // Flattened per dtype, in named_buffers() order (the same on every rank of the same model).
  std::vector<std::pair<DType, std::vector<Tensor>>> groups;
  for (auto& [name, b] : module_->named_buffers()) {
    if (b.numel() == 0) continue;
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.first == b.dtype(); });
    if (it == groups.end()) it = groups.insert(groups.end(), {b.dtype(), {}});
    it->second.push_back(b);
  }
  std::vector<Tensor> flats;
  std::vector<comm::WorkPtr> works;
  for (auto& [dtype, bufs] : groups) {
    std::vector<Tensor> flat;
    for (const Tensor& b : bufs) flat.push_back(ops::reshape(b, {b.numel()}));
    flats.push_back(ops::cat(flat, 0));
    works.push_back(group_->broadcast(flats.back(), 0));
  }
  comm::wait_all(works);
  if (group_->rank() == 0) return;
  for (size_t g = 0; g < groups.size(); ++g) {
    int64_t at = 0;
    for (Tensor& b : groups[g].second) {
      ops::copy_(b, ops::view(ops::narrow(flats[g], 0, at, b.numel()), b.shape()));
      at += b.numel();
    }
  }
}

void DistributedDataParallel::prepare_forward() {
  wait_param_gather();  // a DistributedOptimizer's deferred gather: the forward needs every value
  if (o_.broadcast_buffers() && group_->size() > 1 && sync_enabled_ && autograd::is_grad_enabled())
    sync_buffers();
  step_start_ = std::chrono::steady_clock::now();
  if (!reset_pending_) return;  // inside gradient accumulation: keep adding
  if (!rebuilt_ && ready_order_.size() == params_.size()) {
    // Rank 0's ready order for everyone, so all ranks build the same buckets.
    std::vector<int64_t> ord(ready_order_.begin(), ready_order_.end());
    Tensor t = ops::to(from_vector(ord, {int64_t(ord.size())}), params_[0].tensor.device());
    group_->broadcast(t, 0)->wait();
    std::vector<int> order;
    for (double v : to_vector(t)) order.push_back(int(v));
    // Error-feedback residuals follow their parameters into the new buckets.
    std::vector<Tensor> res(params_.size());
    if (o_.compressor())
      for (size_t k = 0; k < buckets_.size(); ++k)
        if (Tensor r = o_.compressor()->residual(int(k)); r.defined())
          for (int i : buckets_[k].params)
            res[i] = ops::clone(ops::narrow(r, 0, params_[i].offset, params_[i].tensor.numel()));
    build_buckets(order);
    if (o_.compressor())
      for (size_t k = 0; k < buckets_.size(); ++k) {
        Tensor r = zeros({buckets_[k].buffer.numel()}, {DType::f32, buckets_[k].buffer.device()});
        for (int i : buckets_[k].params)
          if (res[i].defined())
            ops::copy_(ops::narrow(r, 0, params_[i].offset, params_[i].tensor.numel()), res[i]);
        o_.compressor()->set_residual(int(k), r);
      }
    rebuilt_ = true;
    if (optimizer_) attach(*optimizer_);
  }
  bytes_at_start_ = reduced_bytes();
  // No zeroing pass: each slot is overwritten by its parameter's first gradient (on_grad_ready),
  // and a parameter that gets none is zeroed in finish_backward.
  for (Param& p : params_) {
    p.stale = true;
    autograd::meta(p.tensor).grad = Tensor();
  }
  reset_pending_ = false;
}

Tensor DistributedDataParallel::forward(const Tensor& x) {
  prepare_forward();
  return module_->forward(x);
}

void DistributedDataParallel::attach(optim::Optimizer& opt) {
  FATHOM_CHECK(!zero_stage_, "DistributedDataParallel::attach: a DistributedOptimizer shards this "
               "DDP (ZeRO-", zero_stage_, "); it reads its shards of the gradients itself, and another "
               "optimizer would step every parameter on every rank");
  optimizer_ = &opt;
  for (const Param& p : params_) opt.set_grad_source(p.name, slot(p));
}

void DistributedDataParallel::on_grad_ready(int i) {
  Param& p = params_[i];
  FATHOM_CHECK(!reset_pending_, "DistributedDataParallel: backward ran without a forward through "
               "DDP since the last synchronized step; call ddp.forward(x) (or ddp.prepare_forward() "
               "before the module's own forward)");
  if (!in_backward_) {
    in_backward_ = true;
    autograd::queue_callback([this] { finish_backward(); });
  }
  grad_buffer(p.bucket);
  Tensor s = slot(p);
  Tensor g = p.tensor.grad();
  bool in_slot = g.defined() && g.impl().storage == s.impl().storage && g.offset() == s.offset();
  // Without a compressor the bucket is all-reduced with a sum of pre-divided gradients, so the
  // division by the world size rides on the pass that moves the gradient into the bucket (as
  // PyTorch's reducer does). The compressor averages its own, smaller payload.
  double scale = sync_enabled_ && !o_.compressor() ? 1.0 / double(group_->size()) : 1.0;
  {
    phase::Scope phase_scope(phase::Phase::bucket_copy);
    if (g.defined() && !in_slot) {
      if (p.stale && g.dtype() == s.dtype()) {
        ops::binary_out(BinaryOp::mul, g, scale, s);
        scale = 1.0;
      } else if (p.stale) {
        ops::copy_(s, g);  // widens a half-precision gradient into the f32 bucket
      } else {
        ops::add_(s, g);   // accumulated under no_sync
      }
    }
    if (scale != 1.0) ops::mul_(s, scale);
  }
  p.stale = false;
  // Later backward passes (no_sync accumulation) add straight into the bucket.
  autograd::meta(p.tensor).grad = p.tensor.dtype() == o_.grad_dtype() ? s : Tensor();
  if (!sync_enabled_) return;
  FATHOM_CHECK(!p.ready, "DistributedDataParallel: parameter '", p.name, "' got its gradient twice "
               "before a synchronization (two backward passes through one forward?)");
  p.ready = true;
  if (!rebuilt_) ready_order_.push_back(i);
  Bucket& b = buckets_[p.bucket];
  if (--b.pending == 0) b.timing.ready_us = now_us();
  if (!o_.overlap()) return;
  launch_ready_buckets();
  poll_completions();
}

void DistributedDataParallel::launch_ready_buckets() {
  while (next_launch_ < int(buckets_.size()) && buckets_[next_launch_].pending == 0) {
    int k = next_launch_++;
    Bucket& b = buckets_[k];
    b.timing.bucket = k;
    b.timing.numel = b.buffer.numel();
    b.timing.launch_us = now_us();
    if (zero_stage_ == 2) b.work = group_->reduce_scatter(b.grad_shard, b.buffer, comm::ReduceOp::sum);
    else if (o_.compressor()) b.work = o_.compressor()->start(*group_, k, b.buffer);
    else b.work = group_->allreduce(b.buffer, comm::ReduceOp::sum);
  }
}

void DistributedDataParallel::poll_completions() {
  for (int k = 0; k < next_launch_; ++k)
    if (buckets_[k].timing.done_us == 0 && buckets_[k].work && buckets_[k].work->is_completed()) {
      buckets_[k].timing.done_us = now_us();
      // ZeRO-2: this rank's block is in grad_shard; the full buffer can go now, not at the end.
      if (zero_stage_ == 2) release_grad_buffer(k);
    }
}

void DistributedDataParallel::finish_backward() {
  in_backward_ = false;
  if (!sync_enabled_) return;  // gradients stay local until a synchronized backward
  double backward_end = now_us();
  std::string unused;
  for (Param& p : params_) {
    if (p.ready) continue;
    grad_buffer(p.bucket);
    if (p.stale) ops::fill_(slot(p), 0);
    p.stale = false;
    unused += (unused.empty() ? "'" : ", '") + p.name + "'";
    p.ready = true;
    if (!rebuilt_) ready_order_.push_back(int(&p - params_.data()));
    if (--buckets_[p.bucket].pending == 0) buckets_[p.bucket].timing.ready_us = backward_end;
  }
  if (!unused.empty() && !o_.find_unused_parameters()) {
    // Launch what is left so the other ranks are not left waiting, then fail.
    launch_ready_buckets();
    for (Bucket& b : buckets_) if (b.work) b.work->wait();
    detail::fail("DistributedDataParallel: parameters got no gradient in this backward pass: ",
                 unused, ". Make every parameter take part in the loss, or construct DDP with "
                 "find_unused_parameters = true");
  }
  launch_ready_buckets();
  for (size_t k = 0; k < buckets_.size(); ++k) {
    Bucket& b = buckets_[k];
    b.work->wait();
    if (b.timing.done_us == 0) b.timing.done_us = now_us();
    if (o_.compressor()) o_.compressor()->finish(int(k), b.buffer);
  }
  if (o_.compressor()) o_.compressor()->next_step();
  // A half-precision parameter's gradient never entered autograd's grad (its slot is f32): make
  // the reduced main grad its grad now, so a plain optimizer (not attached) trains it too.
  // ZeRO-2 keeps no full gradient: only this rank's block of each bucket, which the
  // DistributedOptimizer steps.
  if (zero_stage_ == 2) {
    for (size_t k = 0; k < buckets_.size(); ++k) release_grad_buffer(int(k));
  } else {
    for (const Param& p : params_) autograd::meta(p.tensor).grad = slot(p);
  }

  stats_.bytes_sent = reduced_bytes() - bytes_at_start_;
  stats_.bytes_uncompressed = 0;
  stats_.buckets.clear();
  for (const Param& p : params_) stats_.bytes_uncompressed += uint64_t(p.tensor.numel()) * 4;
  for (const Bucket& b : buckets_) stats_.buckets.push_back(b.timing);
  stats_.backward_end_us = backward_end;
  stats_.sync_end_us = now_us();
  write_trace();
  ++stats_.step;

  for (Param& p : params_) p.ready = false;
  for (Bucket& b : buckets_) {
    b.pending = int(b.params.size());
    b.work.reset();
    b.timing = BucketTiming();
  }
  next_launch_ = 0;
  reset_pending_ = true;
}

void DistributedDataParallel::write_trace() {
  if (!trace::enabled()) return;
  // Each bucket on a row of its own (they overlap backward and each other): queued from ready
  // to launch (waiting for the bucket before it), then reducing from launch to completion.
  int64_t start = trace::now_us() - int64_t(now_us());  // the step's start on the trace clock
  for (const BucketTiming& t : stats_.buckets) {
    std::string track = "ddp bucket " + std::to_string(t.bucket);
    // "step" counts from 1, as the training loops' step spans do (stats_.step is 0 in the first).
    std::initializer_list<trace::Arg> args = {{"step", stats_.step + 1}, {"bucket", t.bucket}, {"numel", t.numel}};
    trace::record("ddp", "queued", start + int64_t(t.ready_us), start + int64_t(t.launch_us), args, track);
    trace::record("ddp", "reduce", start + int64_t(t.launch_us), start + int64_t(t.done_us), args, track);
  }
}

uint64_t DistributedDataParallel::reduced_bytes() const {
  comm::CommStats st = group_->stats();
  return st[comm::OpKind::allreduce].bytes + st[comm::OpKind::reduce_scatter].bytes;
}

std::vector<int> DistributedDataParallel::bucket_order() const {
  std::vector<int> order;
  for (const Bucket& b : buckets_) order.insert(order.end(), b.params.begin(), b.params.end());
  return order;
}

std::vector<std::vector<std::string>> DistributedDataParallel::bucket_layout() const {
  std::vector<std::vector<std::string>> out;
  for (const Bucket& b : buckets_) {
    out.emplace_back();
    for (int i : b.params) out.back().push_back(params_[i].name);
  }
  return out;
}

}  // namespace fathom::parallel
