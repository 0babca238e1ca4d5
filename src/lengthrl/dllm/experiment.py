"""The flexibility-trap experiment on the diffusion organism (arXiv 2601.15165), through the trainer.

1. build (or reuse) the organism: masked-diffusion pre-training on part of the task's train split;
2. before RL: greedy accuracy for several (steps, block_length) parallel-decoding settings, and pass@k curves of
   AR-order and arbitrary-order (confidence) sampling on the held-out test split, and the bias of the cheap
   log-prob estimators against the exact ones (`evaluate`);
3. JustGRPO: `lengthrl.train.train` with ``policy = "diffusion"`` and the run of
   `configs/justgrpo_organism.toml` (`DEMO_CONFIG`; checkpoints, resume and verifier deadlines included);
4. the same evaluations after RL (same sampling seed: common random numbers). Writes results.json, passk.md
   (tables) and passk.png to `out`, the training run to `out`/train.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from lengthrl.dllm.bias import estimator_bias
from lengthrl.dllm.model import char_tokenizer_for
from lengthrl.dllm.organism import OrganismRecipe, longest_solution, task_organism, task_texts
from lengthrl.dllm.passk import correct_counts, greedy_accuracy, passk_curve
from lengthrl.dllm.rollout import generate_ar
from lengthrl.errors import ConfigError
from lengthrl.rollout import left_pad
from lengthrl.train.prompts import encode_prompts
from lengthrl.tasks.base import Task

#: the run of `configs/justgrpo_organism.toml` (kept equal to it; `--set` overrides keys)
DEMO_CONFIG = {
    "policy": "diffusion", "model": "organism", "task": "dllm_addition", "task_args": {"max_operand": 19},
    "train_prompts": 300, "eval_prompts": 100, "prompts_per_step": 8, "group_size": 8, "max_new_tokens": 4,
    "temperature": 1.0, "steps": 60, "lr": 3e-5, "grad_clip": 1.0, "loss": "grpo", "justgrpo_loss": "official",
    "advantage": "grpo", "adv_eps": 1e-4, "epochs": 1, "mini_batches": 1, "beta": 0.0, "checkpoint_every": 20,
    "log_every": 10, "sample_every": 20,
    "reward": [{"name": "correct", "weight": 2.0}, {"name": "constant", "weight": -1.0}],
}


@dataclass
class FlexibilityConfig:
    """The organism and evaluation settings of `run_flexibility_experiment` (training: a TrainConfig)."""

    task: str | None = None  # a registered task name (lengthrl.tasks.get_task); None: dllm_addition
    task_kwargs: dict | None = None  # that task's arguments (knobs); None: its defaults
    max_operand: int = 19  # dllm_addition operands in [0, max_operand]
    gen_length: int = 4  # 0: the longest solution + EOS
    pretrain_steps: int = 800
    pretrain_fraction: float = 1.0  # share of the train split seen in pre-training (RL sees all of it)
    hidden_size: int = 64
    n: int = 16  # samples per prompt for pass@k
    ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    test_prompts: int | None = None  # default: the whole test split
    decode_settings: tuple[tuple[int, int], ...] | None = None  # (steps, block); None: `default_settings`
    seed: int = 0

    def __post_init__(self):
        if any(k > self.n or k < 1 for k in self.ks):
            raise ConfigError(f"every k in ks {self.ks} must be in [1, n={self.n}]")
        if not 0 < self.pretrain_fraction <= 1:
            raise ConfigError(f"pretrain_fraction must be in (0, 1], got {self.pretrain_fraction}")

    @property
    def task_name(self) -> str:
        return self.task or "dllm_addition"

    @property
    def task_args(self) -> dict:
        return dict(self.task_kwargs or {}) if self.task else {"max_operand": self.max_operand}


def organism_recipe(cfg: FlexibilityConfig) -> OrganismRecipe:
    """The organism settings of `cfg`."""
    return OrganismRecipe(steps=cfg.pretrain_steps, hidden_size=cfg.hidden_size,
                          pretrain_fraction=cfg.pretrain_fraction, seed=cfg.seed)


def default_settings(gen_length: int) -> tuple[tuple[int, int], ...]:
    """(steps, block) pairs: AR order, one block at 1, 1/2 and 1/gen_length forwards per token."""
    g = gen_length
    return tuple(sorted({(g, 1), (g, g), (max(1, g // 2), g), (1, g)}, key=lambda s: (-s[0], s[1])))


def evaluate(model, tok, task: Task, cfg: FlexibilityConfig, seed: int) -> dict:
    """Greedy accuracy per decoding setting, pass@k per sampling order, estimator bias (test split)."""
    test = task.samples("test", n=cfg.test_prompts, seed=0)
    acc = [greedy_accuracy(model, tok, task, test, cfg.gen_length, s, b)
           for s, b in cfg.decode_settings or default_settings(cfg.gen_length)]
    curves = {}
    for order in ("ar", "confidence"):
        g = torch.Generator().manual_seed(seed)
        counts, stats = correct_counts(model, tok, task, test, order, cfg.n, cfg.gen_length, generator=g)
        curves[order] = {"passk": passk_curve(counts, cfg.n, cfg.ks), **stats}
    pids, pmask = left_pad(encode_prompts(tok, test, None), tok.pad_token_id)
    model.eval()
    roll = generate_ar(model, pids, pmask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id, gen_length=cfg.gen_length, n=4,
                       generator=torch.Generator().manual_seed(seed))  # the whole canvas, as trained
    bias = estimator_bias(model, roll.prompt_ids, roll.prompt_mask, roll.response_ids, roll.response_mask,
                          tok.mask_token_id, seed=seed, random_mask={"num_draws": 8})
    return {"greedy": acc, "sampling": curves, "estimator_bias": bias}


def justgrpo_run(out: str | Path, cfg, fcfg: FlexibilityConfig, progress: bool = True, log=print) -> dict:
    """Evaluate the model of `cfg` (a TrainConfig with policy = "diffusion"), train it with `lengthrl.train.train`
    into `out`/train, evaluate again; returns the results (also written to `out`: results.json, passk.md/png)."""
    from lengthrl.dllm.adapter import load, resolve
    from lengthrl.tasks import get_task
    from lengthrl.train.config import to_dict
    from lengthrl.train.loop import train

    if cfg.policy != "diffusion":
        raise ConfigError(f"config key 'policy': the diffusion experiments need 'diffusion', got {cfg.policy!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = resolve(cfg)  # builds or reuses the organism for model = "organism"
    t_org = time.perf_counter() - t0
    task = get_task(cfg.task, **cfg.task_args)
    model, tok = load(model_dir)
    log(f"model {model_dir} ({t_org:.0f} s); evaluating before JustGRPO")
    before = evaluate(model, tok, task, fcfg, cfg.seed)
    t1 = time.perf_counter()
    tr = train(cfg, out / "train", progress=progress, evaluate=False)
    t_train = time.perf_counter() - t1
    log("evaluating after JustGRPO")
    after = evaluate(tr.model, tr.tok, task, fcfg, cfg.seed)  # same sampling seed: common random numbers
    rows = tr.metrics.rows()
    k = max(1, len(rows) // 6)
    mean = lambda rs, key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
    results = {
        "config": {"ks": list(fcfg.ks), "n": fcfg.n, "train": to_dict(cfg), "flexibility": asdict(fcfg)},
        "model_dir": str(model_dir), "before": before, "after": after,
        "train_summary": {"steps": len(rows), "seconds": t_train, "seconds_per_step": t_train / max(len(rows), 1),
                          f"acc_first_{k}_steps": mean(rows[:k], "acc"), f"acc_last_{k}_steps": mean(rows[-k:], "acc"),
                          "ratio_max": max(r.get("ratio_max", 1.0) for r in rows)},
        "train_metrics": rows,
        "seconds_total": time.perf_counter() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "passk.md").write_text(summary_lines(results) + "\n" + markdown_report(results))
    plot_passk(results, out / "passk.png")
    return results


def run_flexibility_experiment(out: str | Path, cfg: FlexibilityConfig, overrides: list[str] | None = None,
                               progress: bool = True, log=print) -> dict:
    """Build the organism of `cfg` in `out`/organism, then `justgrpo_run` with `DEMO_CONFIG` on it (the task,
    canvas and seed of `cfg`, every train prompt; `overrides`: ``key=value`` config keys)."""
    import copy

    from lengthrl.tasks import get_task
    from lengthrl.train.validate import build_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.task_name, **cfg.task_args)
    if cfg.gen_length == 0:
        cfg = replace(cfg, gen_length=longest_solution(task, char_tokenizer_for(task_texts(task)[2])) + 1)
    task_organism(out / "organism", task, cfg.gen_length, organism_recipe(cfg), log=log)
    n_train = len(task.samples("train"))
    base = copy.deepcopy(DEMO_CONFIG) | {
        "model": str(out / "organism"), "task": cfg.task_name, "task_args": cfg.task_args,
        "max_new_tokens": cfg.gen_length, "train_prompts": n_train, "seed": cfg.seed,
        "eval_prompts": min(DEMO_CONFIG["eval_prompts"], len(task.samples("test")))}
    tcfg = build_config(overrides=overrides, extra=base)
    return justgrpo_run(out, tcfg, cfg, progress=progress, log=log)


def summary_lines(res: dict) -> str:
    """Accuracy before/after (greedy AR order and the parallel settings) and the training figures."""
    b, a, s = res["before"]["greedy"], res["after"]["greedy"], res["train_summary"]
    lines = ["## JustGRPO through the trainer", "",
             f"{s['steps']} steps in {s['seconds']:.0f} s ({s['seconds_per_step']:.2f} s/step); train-sample "
             f"accuracy {s[next(k for k in s if k.startswith('acc_first'))]:.3f} -> "
             f"{s[next(k for k in s if k.startswith('acc_last'))]:.3f}; max importance ratio {s['ratio_max']:.6f}", "",
             "| decoding (steps, block) | forwards/token | greedy accuracy before | after |", "|---|---|---|---|"]
    for x, y in zip(b, a):
        lines.append(f"| ({x['steps']}, {x['block_length']}) | {x['forwards_per_token']:.2f} | "
                     f"{100 * x['accuracy']:.1f} | {100 * y['accuracy']:.1f} |")
    return "\n".join(lines) + "\n"


def markdown_report(res: dict) -> str:
    """Tables: pass@k by order before/after RL, greedy accuracy per decoding setting, estimator bias."""
    ks = res["config"]["ks"]
    lines = ["## pass@k on the held-out split (unbiased estimator, temperature 1)", "",
             "| model | order | " + " | ".join(f"pass@{k}" for k in ks) + " | mean length |",
             "|---|---|" + "---|" * (len(ks) + 1)]
    for when in ("before", "after"):
        for order, c in res[when]["sampling"].items():
            vals = " | ".join(f"{100 * c['passk'][k] if k in c['passk'] else 100 * c['passk'][str(k)]:.1f}"
                              for k in ks)
            lines.append(f"| {when} JustGRPO | {order} | {vals} | {c['mean_length']:.2f} |")
    lines += ["", "## greedy accuracy by parallel-decoding setting", "",
              "| model | steps | block | forwards/token | accuracy |", "|---|---|---|---|---|"]
    for when in ("before", "after"):
        for a in res[when]["greedy"]:
            lines.append(f"| {when} | {a['steps']} | {a['block_length']} | {a['forwards_per_token']:.2f} | "
                         f"{100 * a['accuracy']:.1f} |")
    lines += ["", "## approximate log-prob estimators vs exact (AR-order samples, nats)", "",
              "| model | estimator | bias/seq | MAE/seq | bias/token | corr(seq) | exact mean/seq |",
              "|---|---|---|---|---|---|---|"]
    for when in ("before", "after"):
        for name, b in res[when]["estimator_bias"].items():
            lines.append(f"| {when} | {name} | {b['bias_seq']:+.3f} | {b['mae_seq']:.3f} | {b['bias_token']:+.3f} "
                         f"| {b['corr_seq']:.3f} | {b['exact_seq_mean']:.3f} |")
    return "\n".join(lines) + "\n"


def plot_passk(res: dict, path: Path) -> None:
    """pass@k curves (log2 k axis), one line per (order, before/after)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for when, style in (("before", "--"), ("after", "-")):
        for order, color in (("ar", "tab:blue"), ("confidence", "tab:orange")):
            c = res[when]["sampling"][order]["passk"]
            ks = sorted(int(k) for k in c)
            ax.plot(ks, [100 * c[k] if k in c else 100 * c[str(k)] for k in ks], style, color=color, marker="o",
                    label=f"{order} order, {when} JustGRPO")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
