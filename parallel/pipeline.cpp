#include "fathom/parallel/pipeline.h"

#include <time.h>

#include <chrono>

#include "fathom/autograd/engine.h"
#include "fathom/autograd/grad_mode.h"
#include "fathom/autograd/node.h"
#include "fathom/core/ops/factory.h"
#include "fathom/core/ops/shape.h"
#include "fathom/core/trace.h"

namespace fathom::parallel {

namespace {

double wall_now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// This thread's CPU time: what a rank computed, even when the machine's cores are shared by
// more ranks than it has (time-sliced, a rank's wall time includes others' turns).
double thread_cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace

// What a micro-batch chunk keeps from its forward to its (last) backward.
struct Pipeline::MicroState {
  Tensor input;      // the received activation, a leaf that requires grad (none on stage 0)
  Tensor root;       // the stage's output, or the loss on the last stage
  Tensor root_grad;  // kept from BI for W
  autograd::WeightGradPending pending;  // BI's seeds for W
};

struct Pipeline::Recv {
  Tensor buffer;
  comm::WorkPtr work;
};

Pipeline::Pipeline(comm::ProcessGroup& pp_group, std::vector<std::shared_ptr<nn::Module>> chunks,
                   PipelineLoss loss, PipelineOptions options)
    : pg_(pp_group), chunks_(std::move(chunks)), loss_(std::move(loss)), options_(std::move(options)),
      p_(pp_group.size()), rank_(pp_group.rank()), v_(int(chunks_.size())),
      m_(options_.microbatches()) {
  FATHOM_CHECK(v_ >= 1, "Pipeline: no stage modules given for rank ", rank_, " of ", pg_.name());
  for (size_t c = 0; c < chunks_.size(); ++c)
    FATHOM_CHECK(chunks_[c] != nullptr, "Pipeline: chunk ", c, " is null");
  FATHOM_CHECK(loss_ != nullptr, "Pipeline: no loss function given");
  FATHOM_CHECK(options_.prefetch() >= 0, "Pipeline: prefetch ", options_.prefetch(), " must be >= 0");
  FATHOM_CHECK(p_ == 1 || !options_.activation_shape().empty(), "Pipeline: activation_shape is "
               "not set; a stage must know the shape of what it receives (one micro-batch's "
               "output of a stage, e.g. {b, T, C})");
  // Tags: (micro-batch, receiving chunk, direction) must fit DeepComm's [0, 32000), below
  // 31999, which split_gpt's tied-embedding exchange uses.
  FATHOM_CHECK(int64_t(m_) * v_ <= 15999, "Pipeline: m=", m_, " micro-batches x v=", v_,
               " chunks need ", int64_t(m_) * v_ * 2, " message tags; at most 31998 are free");
  actions_ = make_schedule(options_.schedule(), p_, m_, v_, rank_);
  last_backward_.assign(size_t(v_), 0);
  for (size_t i = 0; i < actions_.size(); ++i)
    if (actions_[i].kind == ActionKind::backward || actions_[i].kind == ActionKind::backward_weight)
      last_backward_[size_t(actions_[i].chunk)] = i;
  // Every rank checks the whole schedule (cheap): a deadlock is an error here, not a hang.
  simulate_schedule(options_.schedule(), p_, m_, v_);
}

Pipeline::~Pipeline() = default;

int Pipeline::tag(int microbatch, int chunk, bool activation) const {
  return (microbatch * v_ + chunk) * 2 + (activation ? 1 : 0);
}

void Pipeline::post_recvs_until(size_t limit) {
  int S = p_ * v_;
  for (; posted_ < actions_.size() && posted_ <= limit; ++posted_) {
    const Action& a = actions_[posted_];
    int s = a.chunk * p_ + rank_;
    bool activation = a.kind == ActionKind::forward;
    bool needs = activation ? s > 0
                            : (a.kind == ActionKind::backward || a.kind == ActionKind::backward_input) && s < S - 1;
    if (!needs) continue;
    int src = activation ? (s - 1) % p_ : (s + 1) % p_;
    if (src == rank_) continue;  // p = 1 with chunks: handed over in place by send_to()
    auto r = std::make_unique<Recv>();
    r->buffer = empty(options_.activation_shape(), {options_.activation_dtype(), options_.activation_device()});
    r->work = pg_.recv(r->buffer, src, tag(a.microbatch, a.chunk, activation));
    recvs_[size_t(a.chunk * m_ + a.microbatch) * 2 + activation] = std::move(r);
  }
}

void Pipeline::send_to(const Tensor& t, int stage, int microbatch, bool activation) {
  int dst = stage % p_, chunk = stage / p_;
  if (dst != rank_) {
    sends_.push_back(pg_.send(t, dst, tag(microbatch, chunk, activation)));
    return;
  }
  // A rank cannot message itself: the next chunk on this rank takes the tensor as it is.
  auto r = std::make_unique<Recv>();
  r->buffer = t;
  recvs_[size_t(chunk * m_ + microbatch) * 2 + activation] = std::move(r);
}

Tensor Pipeline::take_recv(const Action& a, bool activation) {
  auto& slot = recvs_[size_t(a.chunk * m_ + a.microbatch) * 2 + activation];
  FATHOM_CHECK(slot != nullptr, "Pipeline: no receive posted for ", action_str(a));
  double t0 = wall_now();
  if (slot->work) slot->work->wait();
  stats_.wait_s += wall_now() - t0;
  Tensor t = slot->buffer;
  slot.reset();
  return t;
}

double Pipeline::step(const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets) {
  FATHOM_CHECK(!is_first() || int(inputs.size()) == m_, "Pipeline::step: the first stage needs ",
               m_, " micro-batch inputs, got ", inputs.size());
  FATHOM_CHECK(!is_last() || int(targets.size()) == m_, "Pipeline::step: the last stage needs ",
               m_, " micro-batch targets, got ", targets.size());
  trace::Scope span("pipeline", "step");
  stats_ = PipelineStepStats{};
  double t_start = wall_now();
  state_.clear();
  state_.resize(size_t(v_) * m_);
  recvs_.clear();
  recvs_.resize(size_t(v_) * m_ * 2);
  sends_.clear();
  posted_ = 0;
  in_flight_ = 0;
  loss_sum_ = 0;
  for (size_t i = 0; i < actions_.size(); ++i) {
    post_recvs_until(i + size_t(options_.prefetch()));
    double w0 = stats_.wait_s, t0 = wall_now(), c0 = thread_cpu_now();
    run_action(i, inputs, targets);
    double wall = wall_now() - t0 - (stats_.wait_s - w0);
    stats_.action_s.push_back(wall);
    stats_.compute_s += wall;
    double cpu = thread_cpu_now() - c0;
    stats_.action_cpu_s.push_back(cpu);
    stats_.compute_cpu_s += cpu;
  }
  double t0 = wall_now();
  comm::wait_all(sends_);
  sends_.clear();
  // The mean loss lives on the last rank; every rank gets it so each can print it.
  Tensor loss = full({1}, is_last() ? loss_sum_ / m_ : 0.0, DType::f64);
  if (p_ > 1) pg_.broadcast(loss, p_ - 1)->wait();
  stats_.wait_s += wall_now() - t0;
  stats_.loss = to_vector(loss)[0];
  stats_.wall_s = wall_now() - t_start;
  state_.clear();
  return stats_.loss;
}

void Pipeline::run_action(size_t i, const std::vector<Tensor>& inputs,
                          const std::vector<Tensor>& targets) {
  const Action& a = actions_[i];
  int S = p_ * v_, s = a.chunk * p_ + rank_, mb = a.microbatch;
  auto& st = state_[size_t(a.chunk * m_ + mb)];
  trace::Scope span("pipeline", action_name(a.kind), "microbatch", mb);
  // The gradient arriving at this stage's output: from the next stage, or d(loss / m)/d(loss).
  auto root_grad = [&]() {
    if (s < S - 1) return take_recv(a, false);
    return full(st->root.shape(), 1.0 / m_, st->root.options());
  };
  auto send_input_grad = [&](Tensor g) {
    if (!g.defined()) g = zeros(st->input.shape(), st->input.options());  // input unused
    g = ops::contiguous(g);
    send_to(g, s - 1, mb, false);
  };
  auto before_accumulating = [&]() {
    if (options_.before_last_backward() && last_backward_[size_t(a.chunk)] == i)
      options_.before_last_backward()(a.chunk);
  };
  switch (a.kind) {
    case ActionKind::forward: {
      FATHOM_CHECK(st == nullptr, "Pipeline: ", action_str(a), " runs twice");
      st = std::make_unique<MicroState>();
      Tensor x;
      if (s == 0) {
        x = inputs[size_t(mb)];
      } else {
        x = take_recv(a, true);
        x.requires_grad_(true);
        st->input = x;
      }
      Tensor out = chunks_[size_t(a.chunk)]->forward(x);
      if (s == S - 1) {
        Tensor loss = loss_(out, targets[size_t(mb)]);
        FATHOM_CHECK(loss.numel() == 1 && loss.requires_grad(), "Pipeline: the loss of micro-batch ",
                     mb, " is ", loss.desc(), "; it must be one element that requires grad");
        loss_sum_ += to_vector(loss)[0];
        st->root = loss;
      } else {
        FATHOM_CHECK(out.shape() == options_.activation_shape() &&
                         out.dtype() == options_.activation_dtype() &&
                         out.device() == options_.activation_device(),
                     "Pipeline: stage ", s, " output ", out.desc(), " of micro-batch ", mb,
                     " is not the activation_shape ", shape_str(options_.activation_shape()), " ",
                     dtype_name(options_.activation_dtype()), " ", options_.activation_device().str(),
                     " the next stage expects");
        send_to(ops::contiguous(out.detach()), s + 1, mb, true);
        st->root = out;
      }
      stats_.peak_in_flight = std::max(stats_.peak_in_flight, ++in_flight_);
      return;
    }
    case ActionKind::backward: {
      FATHOM_CHECK(st != nullptr, "Pipeline: ", action_str(a), " before its forward");
      Tensor g = root_grad();
      before_accumulating();
      autograd::backward({st->root}, {g});
      if (s > 0) send_input_grad(st->input.grad());
      st.reset();  // the activations go now, not at the end of the step
      --in_flight_;
      return;
    }
    case ActionKind::backward_input: {
      FATHOM_CHECK(st != nullptr, "Pipeline: ", action_str(a), " before its forward");
      st->root_grad = root_grad();
      if (s > 0) {
        autograd::Grads g = autograd::grad_input({st->root}, {st->root_grad},
                                                 {autograd::gradient_edge(st->input)}, st->pending);
        send_input_grad(g[0]);
      }
      return;
    }
    case ActionKind::backward_weight: {
      FATHOM_CHECK(st != nullptr && st->root_grad.defined(), "Pipeline: ", action_str(a),
                   " before its BI");
      before_accumulating();
      if (s > 0)
        autograd::backward_weight(st->pending);
      else
        autograd::backward({st->root}, {st->root_grad});
      st.reset();
      --in_flight_;
      return;
    }
  }
}

}  // namespace fathom::parallel
