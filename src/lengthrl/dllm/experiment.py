"""The flexibility-trap experiment on the diffusion organism (arXiv 2601.15165, section 5 of the reference).

1. build (or reuse) the organism: masked-diffusion pre-training on part of the task's train split;
2. before RL: greedy accuracy for several (steps, block_length) parallel-decoding settings, and pass@k curves of
   AR-order and arbitrary-order (confidence) sampling on the held-out test split, and the bias of the cheap
   log-prob estimators against the exact ones;
3. JustGRPO on the whole train split;
4. the same evaluations after RL. Writes results.json, passk.md (tables) and passk.png to `out`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from lengthrl.dllm.bias import estimator_bias
from lengthrl.dllm.justgrpo import JustGRPOConfig, justgrpo_train
from lengthrl.dllm.model import char_tokenizer_for
from lengthrl.dllm.organism import OrganismRecipe, longest_solution, task_organism, task_texts
from lengthrl.dllm.passk import correct_counts, greedy_accuracy, passk_curve
from lengthrl.dllm.pretrain import encode_prompts
from lengthrl.dllm.rollout import DiffusionPolicy
from lengthrl.dllm.toytask import AdditionTask
from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Task


@dataclass
class FlexibilityConfig:
    """Settings of `run_flexibility_experiment` (defaults: a few minutes on 2 CPU cores)."""

    task: str | None = None  # a registered task name (lengthrl.tasks.get_task); None: AdditionTask
    max_operand: int = 19  # AdditionTask operands in [0, max_operand]
    gen_length: int = 4  # 0: the longest solution + EOS
    pretrain_steps: int = 800
    pretrain_fraction: float = 1.0  # share of the train split seen in pre-training (RL sees all of it)
    hidden_size: int = 64
    n: int = 16  # samples per prompt for pass@k
    ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    test_prompts: int | None = None  # default: the whole test split
    decode_settings: tuple[tuple[int, int], ...] | None = None  # (steps, block); None: `default_settings`
    grpo: JustGRPOConfig = field(default_factory=JustGRPOConfig)
    seed: int = 0

    def __post_init__(self):
        if any(k > self.n or k < 1 for k in self.ks):
            raise ConfigError(f"every k in ks {self.ks} must be in [1, n={self.n}]")
        if not 0 < self.pretrain_fraction <= 1:
            raise ConfigError(f"pretrain_fraction must be in (0, 1], got {self.pretrain_fraction}")


def organism_recipe(cfg: FlexibilityConfig) -> OrganismRecipe:
    """The organism settings of `cfg`."""
    return OrganismRecipe(steps=cfg.pretrain_steps, hidden_size=cfg.hidden_size,
                          pretrain_fraction=cfg.pretrain_fraction, seed=cfg.seed)


def default_settings(gen_length: int) -> tuple[tuple[int, int], ...]:
    """(steps, block) pairs: AR order, one block at 1, 1/2 and 1/gen_length forwards per token."""
    g = gen_length
    return tuple(sorted({(g, 1), (g, g), (max(1, g // 2), g), (1, g)}, key=lambda s: (-s[0], s[1])))


def resolve_task(cfg: FlexibilityConfig) -> Task:
    """The task named in `cfg.task` (through the project's task registry), else `AdditionTask`."""
    if cfg.task is None:
        return AdditionTask(max_operand=cfg.max_operand)
    import lengthrl.tasks as tasks

    if not hasattr(tasks, "get_task"):
        raise ConfigError(f"task {cfg.task!r}: this lengthrl build has no task registry; omit --task")
    return tasks.get_task(cfg.task)


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
    pids, pmask = encode_prompts(tok, [s.prompt for s in test])
    pol = DiffusionPolicy.from_tokenizer(model, tok, cfg.gen_length)
    roll = pol.generate(pids, pmask, n=4, generator=torch.Generator().manual_seed(seed))
    bias = estimator_bias(model, roll.prompt_ids, roll.prompt_mask, roll.response_ids, roll.response_mask,
                          tok.mask_token_id, seed=seed, random_mask={"num_draws": 8})
    return {"greedy": acc, "sampling": curves, "estimator_bias": bias}


def run_flexibility_experiment(out: str | Path, cfg: FlexibilityConfig, task: Task | None = None,
                               log=print) -> dict:
    """Run the experiment (module docstring); returns the results written to `out`/results.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = task or resolve_task(cfg)
    if cfg.gen_length == 0:
        cfg = replace(cfg, gen_length=longest_solution(task, char_tokenizer_for(task_texts(task)[2])) + 1)
    org = task_organism(out / "organism", task, cfg.gen_length, organism_recipe(cfg), log=log)
    tok = org.tokenizer
    log("evaluating the organism before RL")
    before = evaluate(org.model, tok, task, cfg, cfg.seed)
    model = copy.deepcopy(org.model)
    policy = DiffusionPolicy.from_tokenizer(model, tok, cfg.gen_length)
    history = justgrpo_train(policy, tok, task, cfg.grpo, log=log)
    log("evaluating after JustGRPO")
    after = evaluate(model, tok, task, cfg, cfg.seed)  # same sampling seed: common random numbers
    cfg_dict = asdict(cfg)
    results = {"config": cfg_dict, "before": before, "after": after, "justgrpo": history,
               "organism_final_loss": org.meta.get("final_loss")}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "passk.md").write_text(markdown_report(results))
    plot_passk(results, out / "passk.png")
    return results


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
