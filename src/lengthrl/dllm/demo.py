"""`lengthrl dllm demo` (`make demo-dllm`): JustGRPO of the diffusion organism through the main trainer, with the
flexibility-trap evaluation before and after (arXiv 2601.15165).

1. build (or reuse, from the cache the trainer uses for ``model = "organism"``) the task's diffusion organism;
2. before RL: greedy accuracy for AR-order decoding (steps = gen length, block 1) and parallel decoding settings,
   pass@k of AR-order vs confidence-order sampling, estimator biases (`lengthrl.dllm.experiment.evaluate`);
3. `lengthrl.train.train` with ``policy = "diffusion"`` (grpo, one update per batch, z-scores eps 1e-4, +1/-1);
4. the same evaluation of the trained model (same sampling seed: common random numbers).
Writes OUT/results.json, OUT/passk.md, OUT/passk.png and the training run in OUT/train.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

#: the run of `configs/justgrpo_organism.toml` (kept equal to it; `--set` overrides keys)
DEMO_CONFIG = {
    "policy": "diffusion", "model": "organism", "task": "dllm_addition", "task_args": {"max_operand": 19},
    "train_prompts": 300, "eval_prompts": 100, "prompts_per_step": 8, "group_size": 8, "max_new_tokens": 4,
    "temperature": 1.0, "steps": 60, "lr": 3e-5, "grad_clip": 1.0, "loss": "grpo", "advantage": "grpo",
    "adv_eps": 1e-4, "epochs": 1, "mini_batches": 1, "beta": 0.0, "checkpoint_every": 20, "log_every": 10,
    "sample_every": 20,
    "reward": [{"name": "correct", "weight": 2.0}, {"name": "constant", "weight": -1.0}],
}


def run_demo(out: str | Path, config: str | None = None, overrides: list[str] | None = None, n: int = 16,
             ks: tuple[int, ...] = (1, 2, 4, 8, 16), test_prompts: int | None = None, progress: bool = True,
             log=print) -> dict:
    """Run the demo (module docstring); returns the results written to OUT/results.json."""
    from lengthrl.dllm.adapter import load, resolve
    from lengthrl.dllm.experiment import FlexibilityConfig, evaluate, markdown_report, plot_passk
    from lengthrl.tasks import get_task
    from lengthrl.train.config import build_config, to_dict
    from lengthrl.train.loop import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = build_config(config, overrides, extra=None if config else copy.deepcopy(DEMO_CONFIG))
    if cfg.policy != "diffusion":
        from lengthrl.errors import ConfigError

        raise ConfigError(f"config key 'policy': the diffusion demo needs 'diffusion', got {cfg.policy!r}")
    t0 = time.perf_counter()
    model_dir = resolve(cfg)  # builds or reuses the organism
    t_org = time.perf_counter() - t0
    task = get_task(cfg.task, **cfg.task_args)
    fcfg = FlexibilityConfig(gen_length=cfg.max_new_tokens, n=n, ks=tuple(ks), test_prompts=test_prompts,
                             seed=cfg.seed)
    model, tok = load(model_dir)
    log(f"organism {model_dir} ({t_org:.0f} s); evaluating before JustGRPO")
    before = evaluate(model, tok, task, fcfg, cfg.seed)
    t1 = time.perf_counter()
    tr = train(cfg, out / "train", progress=progress, evaluate=False)
    t_train = time.perf_counter() - t1
    log("evaluating after JustGRPO")
    after = evaluate(tr.model, tr.tok, task, fcfg, cfg.seed)
    rows = tr.metrics.rows()
    k = max(1, len(rows) // 6)
    mean = lambda rs, key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
    results = {
        "config": {"ks": list(ks), "n": n, "train": to_dict(cfg), "flexibility": asdict(fcfg)},
        "model_dir": str(model_dir), "before": before, "after": after,
        "train_summary": {"steps": len(rows), "seconds": t_train, "seconds_per_step": t_train / max(len(rows), 1),
                          f"acc_first_{k}_steps": mean(rows[:k], "acc"), f"acc_last_{k}_steps": mean(rows[-k:], "acc"),
                          "ratio_max": max(r.get("ratio_max", 1.0) for r in rows)},
        "seconds_total": time.perf_counter() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "passk.md").write_text(summary_lines(results) + "\n" + markdown_report(results))
    plot_passk(results, out / "passk.png")
    return results


def summary_lines(res: dict) -> str:
    """Accuracy before/after (greedy AR order and the fastest parallel setting) and the training figures."""
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
