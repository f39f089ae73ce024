"""What keeping freed memory (`pipeline.allocator.keep_freed_memory`, set in every training worker) buys a
training step, against glibc's default allocator, side by side: each round builds `step_cost.py`'s pixel model
and pick-shaped batch (or, with `--text`, its text ones) in two fresh processes, one per allocator, in alternating
order, and times the BC and Q-SFT steps. Prints each step's median wall time, kernel time and minor page faults,
and the ratio kept / default.

    python benchmarks/allocator.py [--batch 32] [--iters 8] [--rounds 2] [--text]
"""

import argparse
import multiprocessing
import resource
import statistics
import time

METHODS = ("bc", "qsft (pi_beta precomputed)")


def measure(keep: bool, batch: int, iters: int, text: bool) -> dict[str, tuple[float, float, float]]:
    """In this (fresh) process: method -> (median seconds, kernel seconds, minor faults) per step."""
    import torch
    from step_cost import method_steps, pixel_setup, text_setup

    from pipeline.allocator import keep_freed_memory
    from pipeline.config import MODEL_PRESETS, ModelConfig, apply_overrides

    if keep and not keep_freed_memory():
        raise SystemExit("this platform's allocator has no mallopt (glibc): nothing to compare")
    torch.set_num_threads(2)
    mcfg = apply_overrides(ModelConfig(), MODEL_PRESETS["tiny"])
    steps = method_steps(mcfg, *(text_setup(mcfg, batch, 160) if text else pixel_setup(mcfg, batch)))
    out = {}
    for name in METHODS:
        steps[name]()  # warm-up
        before, seconds = resource.getrusage(resource.RUSAGE_SELF), [steps[name]() for _ in range(iters)]
        after = resource.getrusage(resource.RUSAGE_SELF)
        out[name] = (statistics.median(seconds), (after.ru_stime - before.ru_stime) / iters,
                     (after.ru_minflt - before.ru_minflt) / iters)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--text", action="store_true", help="step_cost.py's text model and batch instead")
    args = parser.parse_args()
    runs: dict[bool, list[dict]] = {False: [], True: []}
    spawn = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    for r in range(args.rounds):
        for keep in ((False, True) if r % 2 == 0 else (True, False)):
            with spawn.Pool(1) as pool:
                runs[keep].append(pool.apply(measure, (keep, args.batch, args.iters, args.text)))
    for name in METHODS:
        row = {keep: [statistics.mean(run[name][i] for run in runs[keep]) for i in range(3)] for keep in runs}
        for keep, label in ((False, "glibc default"), (True, "freed memory kept")):
            wall, kernel, faults = row[keep]
            print(f"{name:28s} {label:18s} {1000 * wall:7.1f} ms/step  kernel {1000 * kernel:6.1f} ms/step  "
                  f"{faults:9.0f} minor faults/step")
        print(f"{name:28s} ratio kept/default = {row[True][0] / row[False][0]:.2f}")
    model = "GPT-2 tiny, batch {} Wordle-shaped rows of 160 tokens" if args.text else "PixelGPT tiny, batch {} pick-shaped episodes"
    print(f"{model.format(args.batch)}, 2 threads, {args.rounds} rounds x {args.iters} "
          f"steps per allocator; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
