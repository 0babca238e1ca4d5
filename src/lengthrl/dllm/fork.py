"""The flexibility trap over seeds (arXiv 2601.15165) on the `dllm_fork` task (`lengthrl dllm fork`).

For each seed s: build the diffusion organism of `dllm_fork` with pre-training seed s (an independent SFT model per
seed), measure pass@k in AR order and confidence order on the held-out prompts, train it with JustGRPO through the
trainer (``policy = "diffusion"``, training seed s) and measure again (`run_flexibility_experiment`, one directory
per seed). Then judge the paper's claims over the seeds with t-intervals (`lengthrl.analysis.verdicts`):

1. on the SFT model, AR-order pass@K_max minus confidence-order pass@K_max > 0 (AR order explores the fork);
2. the same gap after JustGRPO;
3. JustGRPO raises AR-order pass@1 over the SFT model it started from (paired per seed).

Writes OUT/summary.json (per-seed values and verdicts), OUT/fork.md (tables) and OUT/fork.png (pass@k curves).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lengthrl.errors import ConfigError

PAPER = "JustGRPO / The Flexibility Trap, arXiv 2601.15165"
#: the task knobs of `make experiments` (d): two 3-digit numbers, half of them with the same leading digit
FORK_TASK_ARGS = {"options": 2, "digits": 3, "close_fraction": 0.5}
#: the JustGRPO keys of `make experiments` (d) on top of `lengthrl.dllm.experiment.DEMO_CONFIG`
FORK_TRAIN_SETS = ("steps=100", "lr=3e-4", "prompts_per_step=8", "group_size=8", "checkpoint_every=0",
                   "sample_every=0", "log_every=5")


@dataclass
class ForkConfig:
    """Settings of `run_fork_experiment` (training keys: `sets`, ``key=value`` as for `lengthrl train --set`)."""

    seeds: tuple[int, ...] = (0, 1, 2, 3)
    task_args: dict = field(default_factory=lambda: dict(FORK_TASK_ARGS))
    pretrain_steps: int = 800
    n: int = 64
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    test_prompts: int = 200
    sets: tuple[str, ...] = FORK_TRAIN_SETS

    def __post_init__(self):
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ConfigError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if 1 not in self.ks:
            raise ConfigError(f"ks must contain 1 (claim 3 is about pass@1), got {self.ks}")
        if self.test_prompts < 1:
            raise ConfigError(f"test_prompts must be >= 1, got {self.test_prompts}")


def _curve(res: dict, when: str, order: str) -> dict[int, float]:
    return {int(k): float(v) for k, v in res[when]["sampling"][order]["passk"].items()}


def position_confidence(model_dir: str | Path, test, gen_length: int) -> dict:
    """Where the uncertainty sits: for the fully masked canvas (the state both orders start from), the mean over
    the test prompts of the model's probability of the reference token at each response position (0: the fork
    letter), over all prompts and over the close ones (same leading digit); `gen_length` masks, as sampled."""
    import torch

    from lengthrl.dllm.forward import full_logits
    from lengthrl.dllm.model import load_diffusion_model
    from lengthrl.rollout import left_pad
    from lengthrl.train.prompts import encode_prompts

    lm = load_diffusion_model(model_dir)
    tok, model = lm.tokenizer, lm.model.eval()
    ref = [tok(s.answer, add_special_tokens=False)["input_ids"] for s in test]
    T = max(len(r) for r in ref)
    pids, pmask = left_pad(encode_prompts(tok, test, None), tok.pad_token_id)
    x = torch.cat([pids, torch.full((len(test), gen_length), tok.mask_token_id)], 1)
    attn = torch.cat([pmask.long(), torch.ones(len(test), gen_length, dtype=torch.long)], 1)
    with torch.no_grad():
        probs = full_logits(model, x, attn)[:, pids.shape[1]:].float().softmax(-1)
    p = [[float(probs[b, j, t]) for j, t in enumerate(r)] for b, r in enumerate(ref)]
    close = [row for row, s in zip(p, test) if s.meta.get("close")]
    avg = lambda rows: [sum(r[j] for r in rows) / len(rows) for j in range(T)] if rows else []  # noqa: E731
    return {"all": avg(p), "close": avg(close), "n_close": len(close)}


def per_seed_values(res: dict) -> dict:
    """The per-seed figures of one seed's results.json: pass@k curves and the claims' values."""
    kmax = max(res["config"]["ks"])
    c = {f"{w}_{o}": _curve(res, w, o) for w in ("before", "after") for o in ("ar", "confidence")}
    return {
        "passk": {name: {str(k): v for k, v in cur.items()} for name, cur in c.items()},
        "gap_before": c["before_ar"][kmax] - c["before_confidence"][kmax],
        "gap_after": c["after_ar"][kmax] - c["after_confidence"][kmax],
        "ar_pass1_gain": c["after_ar"][1] - c["before_ar"][1],
        "train_acc_first": next(v for k, v in res["train_summary"].items() if k.startswith("acc_first")),
        "train_acc_last": next(v for k, v in res["train_summary"].items() if k.startswith("acc_last")),
        "train_seconds": res["train_summary"]["seconds"],
        "seconds_total": res["seconds_total"],
        "greedy_ar_before": res["before"]["greedy"][0]["accuracy"],
        "greedy_ar_after": res["after"]["greedy"][0]["accuracy"],
    }


def fork_verdicts(per_seed: list[dict], seeds, kmax: int) -> list:
    """The three claims of the module docstring, each judged over the seeds (n >= 2)."""
    from lengthrl.analysis.verdicts import judge_one

    col = lambda key: [p[key] for p in per_seed]  # noqa: E731
    return [
        judge_one(f"AR-order sampling reaches a higher pass@{kmax} than confidence-order sampling (SFT model)",
                  PAPER, f"AR pass@{kmax} - confidence pass@{kmax}, SFT model", col("gap_before"), 0.0,
                  seeds=seeds),
        judge_one(f"AR-order sampling reaches a higher pass@{kmax} than confidence-order sampling (after JustGRPO)",
                  PAPER, f"AR pass@{kmax} - confidence pass@{kmax}, after JustGRPO", col("gap_after"), 0.0,
                  seeds=seeds),
        judge_one("JustGRPO raises AR-order pass@1 over the SFT model", PAPER,
                  "AR pass@1 after - before JustGRPO", col("ar_pass1_gain"), 0.0, seeds=seeds),
    ]


def _forget_other_task(seed_dir: Path, task_args: dict) -> None:
    """A seed directory's organism is reused when its pre-training recipe matches, and that recipe does not hold
    the task's knobs: drop an organism built for other knobs (recorded in task_args.json beside it)."""
    import shutil

    seed_dir.mkdir(parents=True, exist_ok=True)
    mark = seed_dir / "task_args.json"
    if mark.is_file() and json.loads(mark.read_text()) != task_args:
        shutil.rmtree(seed_dir / "organism", ignore_errors=True)
    mark.write_text(json.dumps(task_args, sort_keys=True))


def run_fork_experiment(out: str | Path, cfg: ForkConfig | None = None, progress: bool = False, log=print) -> dict:
    """Run every seed (module docstring) into OUT/seed<S>, judge the claims, write the summary; returns it."""
    from lengthrl.dllm.experiment import FlexibilityConfig, run_flexibility_experiment
    from lengthrl.tasks import get_task

    cfg = cfg or ForkConfig()
    task = get_task("dllm_fork", **cfg.task_args)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per_seed = []
    for s in cfg.seeds:
        log(f"seed {s}: SFT organism, pass@k, JustGRPO, pass@k")
        fcfg = FlexibilityConfig(task="dllm_fork", task_kwargs=dict(cfg.task_args), gen_length=0,
                                 pretrain_steps=cfg.pretrain_steps, n=cfg.n, ks=tuple(cfg.ks),
                                 test_prompts=cfg.test_prompts, seed=s)
        _forget_other_task(out / f"seed{s}", cfg.task_args)
        res = run_flexibility_experiment(out / f"seed{s}", fcfg, list(cfg.sets), progress=progress, log=log)
        test = task.samples("test", n=cfg.test_prompts, seed=0)
        conf = {w: position_confidence(d, test, res["config"]["train"]["max_new_tokens"])
                for w, d in (("before", out / f"seed{s}" / "organism"), ("after", out / f"seed{s}" / "train" / "final"))}
        per_seed.append({"seed": s, **per_seed_values(res), "position_confidence": conf})
    kmax = max(cfg.ks)
    found = fork_verdicts(per_seed, list(cfg.seeds), kmax) if len(cfg.seeds) >= 2 else []
    summary = {"config": asdict(cfg), "per_seed": per_seed, "verdicts": [v.to_json() for v in found],
               "notes": [v.text() for v in found] or ["one seed: no verdict (an interval over seeds needs >= 2)"],
               "seconds_total": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "fork.md").write_text(markdown(summary))
    plot(summary, out / "fork.png")
    for line in summary["notes"]:
        log(line)
    return summary


def _mean(xs):
    return sum(xs) / len(xs)


def markdown(summary: dict) -> str:
    """Tables: mean pass@k over seeds per (model, order); per-seed claim values; the verdicts."""
    ks = summary["config"]["ks"]
    ps = summary["per_seed"]
    lines = ["## pass@k on the held-out prompts, mean over seeds (temperature 1)", "",
             "| model | order | " + " | ".join(f"pass@{k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for when in ("before", "after"):
        for order in ("ar", "confidence"):
            vals = [_mean([p["passk"][f"{when}_{order}"][str(k)] for p in ps]) for k in ks]
            lines.append(f"| {'SFT' if when == 'before' else 'JustGRPO'} | {order} | "
                         + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
    kmax = max(ks)
    lines += ["", "## per seed", "",
              f"| seed | AR - conf pass@{kmax}, SFT | after JustGRPO | AR pass@1 SFT | after | gain | "
              "train-sample acc first -> last | train s |", "|---|---|---|---|---|---|---|---|"]
    for p in ps:
        lines.append(f"| {p['seed']} | {p['gap_before']:+.3f} | {p['gap_after']:+.3f} | "
                     f"{p['passk']['before_ar']['1']:.3f} | {p['passk']['after_ar']['1']:.3f} | "
                     f"{p['ar_pass1_gain']:+.3f} | {p['train_acc_first']:.3f} -> {p['train_acc_last']:.3f} | "
                     f"{p['train_seconds']:.0f} |")
    T = len(ps[0]["position_confidence"]["before"]["all"])
    lines += ["", "## where the uncertainty sits: p(reference token) on the fully masked canvas, mean over seeds",
              "", "| model | prompts | " + " | ".join(["fork letter"] + [f"digit {j}" for j in range(1, T)]) + " |",
              "|---|---|" + "---|" * T]
    for when in ("before", "after"):
        for sub in ("all", "close"):
            rows = [p["position_confidence"][when][sub] for p in ps if p["position_confidence"][when][sub]]
            if rows:
                lines.append(f"| {'SFT' if when == 'before' else 'JustGRPO'} | {sub} | "
                             + " | ".join(f"{_mean(c):.3f}" for c in zip(*rows)) + " |")
    lines += ["", "## verdicts (95% t-intervals over seeds)", ""]
    lines += [f"- **{v['status'].replace('_', ' ')}**: {v['claim']}: {v['estimate']:+.3f} "
              f"[{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}], n = {v['n_seeds']}" for v in summary["verdicts"]]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """pass@k against k (log2 axis): mean over seeds (thick) and each seed (thin), per (model, order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = summary["config"]["ks"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, when, title in ((axes[0], "before", "SFT model"), (axes[1], "after", "after JustGRPO")):
        for order, color in (("ar", "tab:blue"), ("confidence", "tab:orange")):
            rows = [[100 * p["passk"][f"{when}_{order}"][str(k)] for k in ks] for p in summary["per_seed"]]
            for r in rows:
                ax.plot(ks, r, color=color, alpha=0.3, lw=0.8)
            ax.plot(ks, [_mean(c) for c in zip(*rows)], color=color, marker="o", lw=2, label=f"{order} order")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@k (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"dllm_fork: pass@k by sampling order, {len(summary['per_seed'])} seeds (thin: one seed)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
