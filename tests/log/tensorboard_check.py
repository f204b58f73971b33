#!/usr/bin/env python3
"""Loads an event directory with TensorBoard's own reader and checks its train/loss scalars
against the loss lines a Fathom example printed.

  tensorboard_check.py [--killed] EVENT_DIR RUN_OUTPUT

--killed: the run was killed (kill -9) mid-way; the event file may hold one loss more than the
output printed (each is written before its line), and must hold every printed one.
Exits 77 (CTest: Skipped) when the tensorboard package is not importable, 1 on a mismatch.
"""
import os
import re
import sys

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError as e:  # the package is optional: say so, never pass without checking
    print(f"tensorboard_check: SKIPPED: the tensorboard package is not importable ({e}); "
          "pip install tensorboard to run this check")
    sys.exit(77)


def printed_losses(path):
    """(global step, loss) of every progress line: fashion_mnist's '  epoch E step  B/N  loss X'
    (step B of N in epoch E) and gpt's 'step  S/T  loss X'."""
    out = []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"^  epoch (\d+) step +(\d+)/(\d+)  loss ([-0-9.naif]+)", line)
        if m:
            e, b, n, loss = int(m[1]), int(m[2]), int(m[3]), m[4]
            out.append(((e - 1) * n + b, loss))
            continue
        m = re.match(r"^step +(\d+)/(\d+)  loss ([-0-9.naif]+)", line)
        if m:
            out.append((int(m[1]), m[3]))
    return out


def main():
    args = sys.argv[1:]
    killed = args[:1] == ["--killed"]
    if killed:
        args = args[1:]
    if len(args) != 2:
        print(__doc__)
        return 2
    event_dir, run_output = args
    files = [f for f in os.listdir(event_dir) if "tfevents" in f]
    if len(files) != 1:
        print(f"tensorboard_check: FAIL: want one event file in {event_dir}, found {files}")
        return 1
    acc = EventAccumulator(event_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    print(f"tensorboard_check: {files[0]}: scalar tags {sorted(tags)}")
    if "train/loss" not in tags:
        print("tensorboard_check: FAIL: no train/loss scalars")
        return 1
    logged = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    printed = printed_losses(run_output)
    if not printed:
        print(f"tensorboard_check: FAIL: no loss lines in {run_output}")
        return 1
    if killed and len(logged) in (len(printed), len(printed) + 1):
        logged = logged[:len(printed)]
    if [s for s, _ in logged] != [s for s, _ in printed]:
        print(f"tensorboard_check: FAIL: steps differ: event file {[s for s, _ in logged]}, "
              f"printed {[s for s, _ in printed]}")
        return 1
    bad = 0
    for (step, value), (_, text) in zip(logged, printed):
        # The line prints 4 decimals of the double; the event holds it as float32.
        if f"{value:.4f}" != text and abs(value - float(text)) > 5.1e-5:
            print(f"tensorboard_check: FAIL: step {step}: event file {value!r}, printed {text}")
            bad += 1
    if bad:
        return 1
    print(f"tensorboard_check: OK: {len(logged)} train/loss scalars equal the printed losses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
