"""How the cost of an RL step grows with the response budget T and the group size G (lengthrl, fast engine).

Each point: median seconds of a full trainer step (rollout + scoring + update) after a warm-up step. The
fitted log-log slope is compared with the expectations: per-token work is constant (slope 1 in T) while
matmuls dominate, and grows with the context once attention does (slope -> 2); in G the batch grows, so the
slope is 1 once the batch fills the hardware and below 1 while fixed per-step overhead dominates.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from benchmarks.bench_step import lengthrl_trainer
from benchmarks.common import RESULTS, med, write
from lengthrl.models import save_tiny_random_model


def slope(xs, ys) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def step_time(model_dir, tmp, prompts, G, T, repeats) -> tuple[float, float]:
    tr = lengthrl_trainer(model_dir, tmp / f"s_{G}_{T}", prompts, G, T, "fast", repeats + 1)
    ts, lens = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        m = tr.train_step()
        tr.step += 1
        if i:
            ts.append(time.perf_counter() - t0)
            lens.append(m["len/mean"])
    return med(ts), sum(lens) / len(lens)


def run(quick: bool = False, repeats: int = 2, prompts: int = 2) -> dict:
    Ts, Gs, T0, G0 = ([16, 32, 64, 128], [2, 4, 8, 16], 32, 4) if not quick else ([16, 32], [2, 4], 16, 2)
    tmp = Path(tempfile.mkdtemp(prefix="lengthrl-bench-scaling-"))
    model_dir = save_tiny_random_model(tmp / "model", arch="llama", seed=0)
    vs_T = [dict(zip(("s", "mean_len"), step_time(model_dir, tmp, prompts, G0, T, repeats)), T=T) for T in Ts]
    vs_G = [dict(zip(("s", "mean_len"), step_time(model_dir, tmp, prompts, G, T0, repeats)), G=G) for G in Gs]
    res = {"prompts": prompts, "vs_T": vs_T, "vs_G": vs_G,
           "slope_T": slope([r["mean_len"] for r in vs_T], [r["s"] for r in vs_T]),
           "slope_G": slope([r["G"] for r in vs_G], [r["s"] for r in vs_G])}
    print(f"  scaling: time ~ mean_len^{res['slope_T']:.2f} (G={G0}), ~ G^{res['slope_G']:.2f} (T={T0})", flush=True)
    _plot(res, G0, T0)
    write("scaling", res)
    return res


def _plot(res, G0, T0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, x, label in ((axes[0], "vs_T", "mean_len", f"mean response length (G={G0})"),
                              (axes[1], "vs_G", "G", f"group size G (T={T0})")):
        xs, ys = [r[x] for r in res[key]], [r["s"] for r in res[key]]
        ax.loglog(xs, ys, "o-", label="measured")
        ax.loglog(xs, [ys[0] * v / xs[0] for v in xs], "--", label="linear")
        ax.loglog(xs, [ys[0] * (v / xs[0]) ** 2 for v in xs], ":", label="quadratic")
        ax.set_xlabel(label)
        ax.set_ylabel("s / RL step")
        ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "scaling.png", dpi=100)
    plt.close(fig)
