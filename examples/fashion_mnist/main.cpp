// Fashion-MNIST: an MLP (784-512-512-10, ReLU) or, with --model cnn, a small CNN (two
// conv-BN-ReLU-maxpool blocks, then 3136-128-10) trained with AdamW and cosine decay, on one
// process or data-parallel under mpirun. --batch is the global batch, split over the ranks, so
// the recipe (and its accuracy) does not change with the number of ranks.
//
//   ./build/examples/fashion_mnist --epochs 5
//   ./build/examples/fashion_mnist --model cnn
//   mpirun -np 2 ./build/examples/fashion_mnist --compress 24
//   mpirun -np 2 ./build/examples/fashion_mnist --zero 2     (AdamW's state sharded: docs/zero.md)
//   fathomrun -n 2 --max-restarts 3 -- ./build/examples/fashion_mnist --checkpoint-dir ck --save-every 200
//   mpirun -np 2 ./build/examples/fashion_mnist --tensorboard runs/mlp --profile mlp.trace.json
#include <chrono>
#include <cstdio>

#include <fathom.h>

#include "examples/checkpointing.h"
#include "examples/observe.h"
#include "fathom/comm/flags.h"

using namespace fathom;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Accuracy on the test split, in chunks (eval mode, no graph).
double evaluate(nn::Module& model, const data::TensorDataset& test, Device dev, DType dt) {
  trace::Scope span("train", "evaluate");
  NoGradGuard no_grad;
  model.eval();
  int64_t correct = 0, n = test.size();
  for (int64_t at = 0; at < n; at += 2000) {
    int64_t len = std::min<int64_t>(2000, n - at);
    Tensor x = ops::narrow(test.data(), 0, at, len).to(dev).to(dt);
    Tensor pred = model.forward(x).argmax(1).to(Device::cpu());
    Tensor hit = ops::binary(BinaryOp::eq, pred, ops::narrow(test.targets(), 0, at, len));
    correct += ops::sum(hit).item<int64_t>();
  }
  model.train();
  return double(correct) / double(n);
}

// The flat [N, 784] images as [N, 1, 28, 28], the first layer of the CNN.
struct Images : nn::Module {
  Images() : nn::Module("Images") {}
  Tensor forward(const Tensor& x) override { return x.reshape({-1, 1, 28, 28}); }
};

// conv(1->32, 3x3, pad 1)-BN-ReLU-maxpool 2, conv(32->64)-BN-ReLU-maxpool 2, 3136-128-10.
std::shared_ptr<nn::Sequential> make_cnn(Generator* gen) {
  auto block = [gen](int64_t in, int64_t out) {
    return std::make_shared<nn::Sequential>(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1), gen),
                                            nn::BatchNorm2d(out), nn::ReLU(), nn::MaxPool2d(2));
  };
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<Images>());
  m->push_back(block(1, 32));
  m->push_back(block(32, 64));
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Linear>(64 * 7 * 7, 128, gen));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Linear>(128, 10, gen));
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Checkpointing::catch_stop_signals_early(argc, argv);
  examples::Flags flags("fashion_mnist", "Trains an MLP on Fashion-MNIST (data-parallel under mpirun).");
  flags.add("model", "mlp", "mlp (784-512-512-10) or cnn (two conv-BN-ReLU-pool blocks, 3136-128-10)")
      .add("epochs", "5", "passes over the 60,000 training images")
      .add("batch", "128", "global batch size, split over the ranks")
      .add("lr", "1e-3", "peak learning rate (AdamW)")
      .add("schedule", "cosine", "cosine (to zero over the run) or constant")
      .add("weight-decay", "0.01", "AdamW's decoupled weight decay")
      .add("seed", "0", "seed for initialisation and shuffling")
      .add("device", "cpu", "cpu or cuda[:N] (under mpirun: cuda picks the local rank's GPU)")
      .add("dtype", "f32", "f32, bf16 or f16 (f16 uses dynamic loss scaling)")
      .add("compress", "none", "gradient compression: none, 24 (2:4 sparse) or 24-bf16")
      .add("zero", "0", "0: every rank steps the whole model; 1: AdamW's state and master weights "
                        "sharded over the ranks (ZeRO-1); 2: the gradients too (ZeRO-2)")
      .add("data", data::kFashionMnistDir, "directory with the IDX files")
      .add("max-steps", "0", "stop after this many steps in all (0: train every epoch to the end)")
      .add("log-every", "100", "print the training loss every N steps (0: only per epoch)")
      .add("all-ranks", "false", "print from every rank, not only rank 0")
      .add("load", "", "start from the weights in this .safetensors file (--epochs 0: only evaluate)")
      .add_switch("memory", "print the memory ledger (current and peak bytes by category) at the end");
  examples::Checkpointing::add_flags(flags);
  examples::Observer::add_flags(flags);
  try {
    // Before the flags: a rank that rejects one tells the others (Flags::fail).
    const comm::InitInfo& info = comm::init();
    flags.parse(argc, argv);
    int64_t epochs = flags.nonneg_i64("epochs"), batch = flags.positive_i64("batch");
    int64_t log_every = flags.nonneg_i64("log-every"), max_steps = flags.nonneg_i64("max-steps");
    double lr = flags.positive_f64("lr"), wd = flags.nonneg_f64("weight-decay");
    int64_t zero = flags.nonneg_i64("zero");
    if (zero > 2) flags.fail("--zero must be 0, 1 or 2");
    std::string schedule = flags.str("schedule");
    if (schedule != "cosine" && schedule != "constant") flags.fail("--schedule must be cosine or constant");
    DType dt = flags.model_dtype("dtype");
    int rank = info.rank, world = info.world_size;
    Device dev = flags.rank_device("device", info.device);
    bool talk = rank == 0 || flags.boolean("all-ranks");
    if (batch % world != 0) flags.fail("--batch " + std::to_string(batch) + " must divide by the " +
                                       std::to_string(world) + " ranks");
    // After each rank's own checks, so a rank that rejects a value names it (above).
    flags.check_same_on_all_ranks(*info.world, {"device", "data", "all-ranks", "memory"});

    examples::Observer obs(flags, *info.world, talk, "fashion_mnist");
    std::shared_ptr<data::FashionMNIST> train_set, test_set;
    obs.setup("loading Fashion-MNIST from " + flags.str("data"), [&] {
      train_set = std::make_shared<data::FashionMNIST>(flags.str("data"), true);
      test_set = std::make_shared<data::FashionMNIST>(flags.str("data"), false);
    });
    std::string model_name = flags.str("model");
    if (model_name != "mlp" && model_name != "cnn") flags.fail("--model must be mlp or cnn");
    Generator init_gen(uint64_t(flags.i64("seed")));
    auto model = model_name == "cnn"
                     ? make_cnn(&init_gen)
                     : std::make_shared<nn::Sequential>(nn::Linear(784, 512, &init_gen), nn::ReLU(),
                                                        nn::Linear(512, 512, &init_gen), nn::ReLU(),
                                                        nn::Linear(512, 10, &init_gen));
    // The convolutions' multiply-adds per image: out channels x in x 3 x 3 at 28x28 and 14x14.
    double conv_flops = model_name == "cnn" ? 6.0 * (32 * 1 * 9 * 28 * 28 + 64 * 32 * 9 * 14 * 14) : 0;
    model->to(dev);
    model->to(dt);
    if (!flags.str("load").empty()) model->load_state_dict(checkpoint::load_safetensors(flags.str("load")));
    if (epochs == 0) {
      if (talk) std::printf("test_acc=%.4f\n", evaluate(*model, *test_set, dev, dt));
      return 0;
    }

    auto dopt = parallel::DDPOptions()
                    .compressor(comm::make_compressor(flags.str("compress")));
    parallel::DistributedDataParallel ddp(model, info.world, dopt);
    auto adamw = optim::AdamWOptions(lr).weight_decay(wd);
    std::unique_ptr<optim::Optimizer> optimizer;
    if (zero > 0) {
      optimizer = std::make_unique<parallel::DistributedOptimizer<optim::AdamW>>(
          ddp, adamw, parallel::ZeroOptions().stage(int(zero)));
    } else {
      optimizer = std::make_unique<optim::AdamW>(model->named_parameters(), adamw);
      ddp.attach(*optimizer);
    }
    optim::Optimizer& opt = *optimizer;
    optim::GradScaler scaler(optim::GradScalerOptions().enabled(dt == DType::f16));

    data::DataLoader loader(train_set, data::DataLoaderOptions(batch).seed(uint64_t(flags.i64("seed"))).rank(rank).world(world));
    int64_t steps_per_epoch = loader.batches_per_epoch(), total = epochs * steps_per_epoch;
    if (max_steps > 0) total = std::min(total, max_steps);
    std::unique_ptr<optim::LRScheduler> sched;
    if (schedule == "cosine") sched = std::make_unique<optim::CosineLR>(opt, 0, total);
    else sched = std::make_unique<optim::ConstantLR>(opt);
    if (talk)
      std::printf("fashion_mnist: %d rank(s), global batch %lld (%lld per rank), %lld steps/epoch, "
                  "%s on %s, compression %s\n", world, (long long)batch, (long long)(batch / world),
                  (long long)steps_per_epoch, dtype_name(dt), dev.str().c_str(),
                  dopt.compressor() ? dopt.compressor()->name().c_str() : "none");

    // The epoch's running sums are this rank's part of the state too: a resumed run prints the
    // same window and epoch losses as one never interrupted.
    double loss_sum = 0, window_loss = 0;
    double bytes = 0, bytes_plain = 0;
    checkpoint::TrainState ts;
    ts.model = model.get();
    ts.optimizer = &opt;
    ts.scaler = &scaler;
    ts.scheduler = sched.get();
    ts.loader = &loader;
    ts.extras.push_back(checkpoint::per_rank_provider("ddp", ddp));
    ts.extras.push_back(examples::scalars_provider(
        "loop", {{"loss_sum", &loss_sum}, {"window_loss", &window_loss}, {"bytes", &bytes},
                 {"bytes_plain", &bytes_plain}}));
    examples::Checkpointing ckpt(flags, *info.world, ts, talk);

    int64_t step = ckpt.resume();
    obs.begin(step, total, (examples::matmul_train_flops_per_item(*model) + conv_flops) * double(batch), double(batch),
              "samples", dev, dt);
    auto t0 = std::chrono::steady_clock::now();
    int64_t timed_from = step;  // samples/s counts the steps this process ran
    while (step < total) {
      int64_t ep = step / steps_per_epoch + 1, b = step % steps_per_epoch;
      // The last epoch is cut short when --max-steps ends the run inside it.
      int64_t steps = std::min(steps_per_epoch, total - (ep - 1) * steps_per_epoch);
      trace::Scope step_span("train", "step", "step", step + 1);
      Tensor x, y, loss;
      {
        trace::Scope span("train", "data");
        auto [images, labels] = loader.next();
        x = images.to(dev).to(dt);
        y = labels.to(dev);
      }
      opt.zero_grad();
      {
        examples::Phase span("forward", dev);
        loss = cross_entropy(ddp.forward(x).to(DType::f32), y);
      }
      scaler.scale(loss).backward();  // the "backward" span is autograd's own
      {
        examples::Phase span("optimizer", dev);
        scaler.step(opt);
      }
      double l = loss.item<double>();
      loss_sum += l;
      window_loss += l;
      bytes += double(ddp.last_step().bytes_sent);
      bytes_plain += double(ddp.last_step().bytes_uncompressed);
      ++step;
      obs.step(step, l, scaler.last_grad_norm(), scaler.is_enabled(), world > 1 ? &ddp.last_step() : nullptr);
      if (log_every > 0 && (b + 1) % log_every == 0) {
        double wl = window_loss / double(log_every), lr_now = sched->last_lr()[0];
        std::string tail = obs.interval(step, wl, lr_now, scaler);
        if (talk) {
          std::printf("  epoch %lld step %5lld/%lld  loss %.4f  lr %.2e  %.0f samples/s%s\n", (long long)ep,
                      (long long)(b + 1), (long long)steps_per_epoch, wl, lr_now,
                      double((step - timed_from) * batch) / seconds_since(t0), tail.c_str());
          std::fflush(stdout);
        }
      }
      if (log_every > 0 && (b + 1) % log_every == 0) window_loss = 0;
      sched->step();
      if (b + 1 == steps) {
        double dt_s = seconds_since(t0);
        // The epoch's loss averaged over every rank's shard.
        Tensor mean_loss = from_vector(std::vector<double>{loss_sum / double(steps)}, {1});
        info.world->allreduce(mean_loss, comm::ReduceOp::avg)->wait();
        ddp.sync_buffers();  // the last step's statistics are each rank's own: rank 0's for all
        double acc = evaluate(*model, *test_set, dev, dt);
        obs.metric("epoch/loss", mean_loss.item<double>(), step, false);
        obs.metric("epoch/test_acc", acc, step, true);
        if (talk) {
          std::printf("epoch=%lld loss=%.4f samples_per_s=%.0f test_acc=%.4f", (long long)ep,
                      mean_loss.item<double>(), double((step - timed_from) * batch) / dt_s, acc);
          if (world > 1)
            std::printf(" bytes_per_step=%.0f (%.1f%% of uncompressed)", bytes / double(steps),
                        100.0 * bytes / std::max(bytes_plain, 1.0));
          if (dt == DType::f16) std::printf(" skipped_steps=%lld loss_scale=%.0f", (long long)scaler.skipped_steps(), scaler.get_scale());
          std::printf("\n");
          std::fflush(stdout);
        }
        loss_sum = window_loss = bytes = bytes_plain = 0;
        t0 = std::chrono::steady_clock::now();
        timed_from = step;
      }
      if (ckpt.after_step(step, step == total)) {
        obs.finish();
        return 0;
      }
    }
    ddp.sync_buffers();
    ckpt.finish(*model, {{"model", model_name == "cnn" ? "fashion_mnist CNN conv32-conv64-128-10"
                                                       : "fashion_mnist MLP 784-512-512-10"},
                         {"dtype", dtype_name(dt)}});
    obs.finish();
    if (flags.boolean("memory") && talk) std::printf("%s", memory::report(dev.type).c_str());
  } catch (const std::exception& e) {
    // fathom::Error and anything else (std::bad_alloc, a std::ios_base::failure): prints
    // "[rank R] fashion_mnist: error: ..." and tells the other ranks, which stop at once quoting
    // it instead of waiting in their next collective for this one; never an abort through
    // std::terminate.
    comm::abort(std::string("fashion_mnist: error: ") + e.what());
  }
  return 0;
}
