#pragma once
// Pipeline parallelism: one executor that runs any schedule of parallel/pipeline_schedule.h.
//
//   parallel::Pipeline pipe(*pp_group, chunks, loss_fn,
//       parallel::PipelineOptions().schedule(parallel::ScheduleKind::one_f_one_b)
//           .microbatches(8).activation_shape({b, T, C}));
//   opt.zero_grad();
//   double loss = pipe.step(inputs, targets);  // forward + backward of all micro-batches
//   opt.step();
//
// Rank r of pp_group runs virtual stages c * p + r, one per module in `chunks` (v =
// chunks.size()). Only the first stage reads `inputs` (one tensor per micro-batch) and only the
// last reads `targets` and calls the loss; other ranks may pass empty lists.
//
// What step() does, for every action of this rank's schedule in order:
// - F: the stage's input is the micro-batch (stage 0) or the received activation, made a leaf
//   that requires grad; the output is sent on at once (nonblocking) and kept, with the input,
//   for the backward. The last stage computes loss / m, so the gradients summed over the m
//   micro-batches equal those of the mean loss over the whole batch.
// - B: backward from the output with the received gradient (or from the loss); the input's
//   gradient is sent back, and the micro-batch's tensors are dropped at once.
// - BI, W (zero-bubble): BI is autograd::grad_input to the input only (no weight gradient is
//   computed), sent back at once; W is autograd::backward_weight, which runs only the nodes BI
//   left weight gradients at, accumulates the parameters' gradients and frees the graph. Until
//   W runs the whole graph stays alive, so a micro-batch's activations live from its F to its
//   W (ZB-H1's schedule bounds that to p micro-batches).
// Receives are posted before they are needed (the next `prefetch` actions' inputs) with tags
// that encode (micro-batch, chunk, direction), so messages arrive while this rank computes;
// the executor waits on one only when its action starts, and on all sends at the end.
// Gradients accumulate in the parameters' grad (call zero_grad before), and step() returns the
// mean loss of the last stage on every rank of pp_group (broadcast). With DDP on the chunks,
// hold no_sync() for the step and release it in before_last_backward (docs/pipeline.md).
//
// Between stages travels one tensor per micro-batch, of activation_shape and activation_dtype
// on activation_device (the receiver allocates it before the data arrives). Tested on CPU
// tensors (MPI, where tags match messages); on CUDA, NCCL matches in issue order and a rank
// posting its send before its receive may wait for the peer: not tested here, docs/pipeline.md.
#include <functional>
#include <memory>
#include <vector>

#include "fathom/comm/process_group.h"
#include "fathom/core/options.h"
#include "fathom/nn/module.h"
#include "fathom/parallel/pipeline_schedule.h"

namespace fathom::parallel {

// (last stage's output, target) -> a one-element loss, e.g. cross_entropy.
using PipelineLoss = std::function<Tensor(const Tensor& output, const Tensor& target)>;

struct PipelineOptions {
  FATHOM_ARG(ScheduleKind, schedule) = ScheduleKind::one_f_one_b;
  FATHOM_ARG(int, microbatches) = 1;
  FATHOM_ARG(Shape, activation_shape);
  FATHOM_ARG(DType, activation_dtype) = DType::f32;
  FATHOM_ARG(Device, activation_device) = Device::cpu();
  // How many actions ahead receives are posted (each holds one buffer until used).
  FATHOM_ARG(int, prefetch) = 2;
  // Called with a chunk just before the step's last backward pass that accumulates into that
  // chunk's parameters (its last B or W). Data parallelism over DDP: hold ddp.no_sync() for
  // the step and release it here, so DDP reduces once per step, overlapping that last pass.
  FATHOM_ARG(std::function<void(int chunk)>, before_last_backward);
};

// What one step cost this rank (timings busy on a shared machine; see bench_pipeline).
struct PipelineStepStats {
  double loss = 0;
  int peak_in_flight = 0;    // most micro-batch chunks whose activations were alive at once
  double wall_s = 0;         // the whole step
  double compute_s = 0;      // wall time inside F, B, BI and W (their waits excluded)
  double compute_cpu_s = 0;  // the same, as this thread's CPU time
  double wait_s = 0;         // blocked on receives (and the final sends and loss broadcast)
  std::vector<double> action_s;      // wall time of each action, in schedule order
  std::vector<double> action_cpu_s;  // this thread's CPU time in each action
};

class Pipeline {
 public:
  // pp_group must outlive the pipeline; chunks[c] is virtual stage c * p + r.
  Pipeline(comm::ProcessGroup& pp_group, std::vector<std::shared_ptr<nn::Module>> chunks,
           PipelineLoss loss, PipelineOptions options);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // One forward and backward of every micro-batch (see above). inputs: m tensors on the first
  // stage's rank; targets: m tensors on the last stage's rank. Returns the mean loss.
  double step(const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets);

  const std::vector<Action>& actions() const { return actions_; }
  const PipelineStepStats& last_step() const { return stats_; }
  int stage_rank() const { return rank_; }
  int num_stages() const { return p_; }
  bool is_first() const { return rank_ == 0; }  // holds virtual stage 0
  bool is_last() const { return rank_ == p_ - 1; }  // holds virtual stage p v - 1
  const PipelineOptions& options() const { return options_; }

 private:
  struct MicroState;
  struct Recv;
  void run_action(size_t i, const std::vector<Tensor>& inputs, const std::vector<Tensor>& targets);
  void post_recvs_until(size_t i);
  Tensor take_recv(const Action& a, bool activation);
  void send_to(const Tensor& t, int stage, int microbatch, bool activation);
  int tag(int microbatch, int chunk, bool activation) const;

  comm::ProcessGroup& pg_;
  std::vector<std::shared_ptr<nn::Module>> chunks_;
  PipelineLoss loss_;
  PipelineOptions options_;
  int p_, rank_, v_, m_;
  std::vector<Action> actions_;
  std::vector<size_t> last_backward_;  // per chunk: the index of its last B or W in actions_
  PipelineStepStats stats_;
  // Per step.
  std::vector<std::unique_ptr<MicroState>> state_;  // [chunk * m + microbatch]
  std::vector<std::unique_ptr<Recv>> recvs_;        // [(chunk * m + microbatch) * 2 + activation]
  std::vector<comm::WorkPtr> sends_;
  size_t posted_ = 0;
  int in_flight_ = 0;
  double loss_sum_ = 0;
};

}  // namespace fathom::parallel
