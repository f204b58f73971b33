#pragma once
// Whether Fathom's CPU kernels treat denormal (subnormal) floats as zero: inputs read as zero
// (DAZ) and results that would be denormal written as zero (FTZ). On by default.
//
//   fathom::set_flush_denormal(false);   // IEEE gradual underflow, bit for bit as before
//
// Why on: an x86 core handles an operand or result below FLT_MIN (1.2e-38) in microcode, about
// 100 times slower than a normal one. Training makes such values: AdamW's second moment of a
// gradient near 1e-20 and ReLU MLP gradients late in a cosine schedule. The main job's second
// epoch ran at 18,000 samples/s against 25,000 with flushing (docs/threads.md), and the slowdown
// came and went with the data, not the code. Values that small carry no information for
// training; TensorFlow flushes in its CPU kernels for the same reason (PyTorch leaves it to
// torch.set_flush_denormal). The mode is set only while a Fathom CPU kernel runs (and on the
// pool's threads), so the caller's own floating-point code keeps its IEEE behaviour.
//
// The default can be set with FATHOM_FLUSH_DENORMAL=0|1 (read at the first CPU op or call here;
// another value is an Error naming it). Results stay independent of the thread count either way.
namespace fathom {

bool get_flush_denormal();
// Throws fathom::Error for `true` on a CPU without the mode (Fathom knows it on x86-64).
void set_flush_denormal(bool on);

}  // namespace fathom
