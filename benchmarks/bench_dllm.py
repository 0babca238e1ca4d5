"""Speed of exact AR-order log-probs: chunked `ar_logprobs` vs the one-position-at-a-time loop.

Both run in this process on the same random tiny masked LM and batch, alternating (so a busy machine slows both
alike); the figure printed is loop_time / batched_time (> 1: batched is faster), median over repetitions,
without gradients (scoring) and with a backward pass (training; batched with per-chunk checkpointing, which
keeps one chunk's activations alive at a time and recomputes it in backward, and without).

    PYTHONPATH=src python benchmarks/bench_dllm.py [--batch 8 --prompt 16 --length 64 --reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lengthrl.dllm.logprobs import ar_logprobs, ar_logprobs_loop
from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, tiny_diffusion_model


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok = char_tokenizer()
    cfg = TinyDiffusionConfig(hidden_size=args.hidden, num_layers=args.layers, intermediate_size=2 * args.hidden,
                              max_positions=args.prompt + args.length)
    model = tiny_diffusion_model(tok, cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    B, P, T = args.batch, args.prompt, args.length
    pids = torch.randint(4, len(tok), (B, P), generator=g)
    rids = torch.randint(4, len(tok), (B, T), generator=g)
    rmask = (torch.arange(T)[None] < torch.randint(T // 2, T + 1, (B, 1), generator=g)).long()  # varied lengths
    mask_id = tok.mask_token_id
    report = {}
    for mode, ckpt in (("no_grad", None), ("grad", True), ("grad", False)):
        def loop():
            with torch.set_grad_enabled(mode == "grad"):
                lp = ar_logprobs_loop(model, pids, rids, mask_id, response_mask=rmask)
                if mode == "grad":
                    lp.sum().backward()

        def batched():
            with torch.set_grad_enabled(mode == "grad"):
                lp = ar_logprobs(model, pids, rids, mask_id, args.chunk_size, response_mask=rmask,
                                 use_checkpoint=ckpt)
                if mode == "grad":
                    lp.sum().backward()

        loop(), batched()  # warm-up
        t_loop, t_batch = [], []
        for _ in range(args.reps):
            t_loop.append(timed(loop))
            t_batch.append(timed(batched))
        lo, ba = statistics.median(t_loop), statistics.median(t_batch)
        name = mode if ckpt is None else f"{mode}, checkpoint={'on' if ckpt else 'off'}"
        report[name] = {"loop_s": lo, "batched_s": ba, "ratio": lo / ba}
        print(f"{name:22s} B={B} P={P} T={T} hidden={args.hidden} layers={args.layers}: loop {lo * 1e3:.1f} ms, "
              f"batched {ba * 1e3:.1f} ms, speed ratio loop/batched = {lo / ba:.2f}x")
    return report


if __name__ == "__main__":
    main()


def run(quick: bool = False) -> dict:
    """Entry point of `python -m benchmarks --only dllm`: the ratio at the default shape (quick: fewer reps and a
    shorter response), written to benchmarks/results/dllm.json."""
    from benchmarks.common import write

    report = main(["--reps", "2", "--length", "32"] if quick else [])
    write("dllm", report)
    return report
