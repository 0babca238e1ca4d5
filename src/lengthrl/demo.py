"""`lengthrl demo`, the main job: from one SFT checkpoint of the model organism, train with GSPO,
LUSPO and a length-penalty recipe (DLER) for each of a few seeds, evaluate each on held-out prompts next to the SFT model, and write a
report (HTML + markdown) with the length-bias audit, plus a summary that says whether the organism reproduces
the papers' direction, with the numbers."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from lengthrl.commands import command

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO_RUNS = ("gspo", "luspo", "dler")


def _eval_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())["metrics"]


LUSPO = "LUSPO, arXiv 2602.05261"
DLER = "DLER, arXiv 2510.15110"


def verdicts(per_seed: dict[str, list[dict]], seeds: tuple[int, ...]) -> list:
    """The demo's claims, each judged over training seeds (lengthrl.analysis.verdicts).

    `per_seed[name]` holds one held-out eval summary per seed, in the order of `seeds`; "sft" is the SFT model
    evaluated with each seed's sampling seed, so DLER's seed s is compared with the SFT model's seed s.
    """
    from lengthrl.analysis.verdicts import judge_diff, judge_one

    out = []
    g, lu, d, base = (per_seed.get(k) for k in ("gspo", "luspo", "dler", "sft"))
    if g and lu:
        out.append(judge_diff(
            "LUSPO ends with longer responses than GSPO (paper: x1.51-1.63)", LUSPO,
            "held-out mean length, LUSPO - GSPO (tokens)", "gspo", [m["len/mean"] for m in g],
            "luspo", [m["len/mean"] for m in lu], threshold=0.0, direction="above", seeds=seeds))
    if d and base:
        cut = [1 - md["len/mean"] / max(mb["len/mean"], 1e-9) for md, mb in zip(d, base)]
        dacc = [md["acc"] - mb["acc"] for md, mb in zip(d, base)]
        out.append(judge_one(
            "DLER shortens responses by more than 10% against the SFT model (paper: about 70%)", DLER,
            "length cut 1 - len(DLER)/len(SFT)", cut, threshold=0.10, direction="above", seeds=seeds))
        out.append(judge_one(
            "DLER keeps accuracy: a drop smaller than 0.05 against the SFT model (paper: the same accuracy)", DLER,
            "accuracy, DLER - SFT", dacc, threshold=-0.05, direction="above", seeds=seeds))
    return out


def pooled_metrics(run_dirs: list[Path]) -> dict:
    """Eval metrics of several runs (seeds) pooled over all their records (the table's figures; the verdicts
    use one value per seed instead)."""
    from lengthrl.eval.metrics import summarize
    from lengthrl.eval.records import load_eval

    records = [r for d in run_dirs for r in load_eval(d / "eval.json").records]
    return summarize(records)


def _run_dir(out: Path, name: str, k: int, seed: int) -> Path:
    return out / (name if k == 0 else f"{name}-seed{seed}")


def default_jobs() -> int:
    """Runs trained side by side: one per CPU core, at most 4 (each run uses one torch thread)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _run_one(job: tuple[str, Path, list[str], Path, bool]) -> float:
    """One demo run in its own process: train recipe `config` (or, for 'sft', only evaluate the SFT model) into
    `run_dir`; returns its wall time in seconds. Top-level so that a process pool can pickle it."""
    from lengthrl.train.loop import Trainer, train
    from lengthrl.train.validate import build_config

    name, config, overrides, run_dir, progress = job
    t = time.perf_counter()
    cfg = build_config(config, overrides)
    if name == "sft":
        Trainer(cfg, run_dir, progress=False).evaluate()
    else:
        train(cfg, run_dir, progress=progress)
    return time.perf_counter() - t


def run_demo(out: Path, steps: int | None, eval_prompts: int, seed: int | tuple[int, ...], model: str | None = None,
             runs: tuple[str, ...] = DEMO_RUNS, extra: list[str] | None = None, progress: bool = True,
             jobs: int = 1) -> dict:
    """`seed` may be several seeds: each recipe is trained once per seed from the same SFT model, and the SFT
    model is evaluated once per seed's sampling seed. The verdicts take one held-out value per seed (an interval
    over training runs); the table pools the seeds' records; the report shows the first seed's runs. The runs
    are independent: `jobs` processes train them side by side, each with one torch thread (`threads=1` unless
    `extra` sets it), so the figures are the same for any `jobs`."""
    from rich.console import Console
    from rich.table import Table

    from lengthrl.analysis.audit import audit, plot
    from lengthrl.analysis.report import build_report
    from lengthrl.analysis.runs import load_run
    from lengthrl.models.organism import resolve_model_dir
    from lengthrl.train.validate import build_config

    console = Console()
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]lengthrl demo: what GSPO, LUSPO and a length penalty do to response length")
    model_dir = str(resolve_model_dir(model or "organism"))
    console.print(f"model: {model_dir}  ({time.perf_counter() - t0:.0f}s)")

    rows = audit()
    (out / "audit.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot(rows, out / "audit.png")
    console.print(f"length-bias audit: {sum(r.ok for r in rows)}/{len(rows)} rows match the analytical weights "
                  f"-> {out / 'audit.png'}")

    seeds = (seed,) if isinstance(seed, int) else tuple(seed)
    overrides = [f"model={json.dumps(model_dir)}", f"eval_prompts={eval_prompts}", *(extra or [])]
    if steps is not None:
        overrides.append(f"steps={steps}")
    # one torch thread per run, so that a run's numbers do not depend on how many run side by side
    if not any(o.startswith("threads=") for o in overrides):
        overrides.append("threads=1")
    # the SFT model, evaluated on the same held-out prompts with each seed's sampling (a trainer with no steps),
    # then every recipe once per seed from it: independent runs, `jobs` of them at a time
    names = ("sft", *runs)
    jobs_list = [(name, CONFIGS / f"{runs[0] if name == 'sft' else name}.toml", [*overrides, f"seed={sd}"],
                  _run_dir(out, name, k, sd), progress and jobs == 1)
                 for name in names for k, sd in enumerate(seeds)]
    console.rule(f"{len(jobs_list)} runs ({', '.join(names)} x seeds {', '.join(map(str, seeds))}), {jobs} at a time")
    if jobs == 1:
        run_times = [_run_one(j) for j in jobs_list]
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            run_times = list(pool.map(_run_one, jobs_list))
    timings = {name: sum(t for j, t in zip(jobs_list, run_times) if j[0] == name) for name in names}
    per_seed: dict[str, list[dict]] = {}
    results = {}
    for name in names:
        dirs = [_run_dir(out, name, k, sd) for k, sd in enumerate(seeds)]
        per_seed[name] = [_eval_metrics(d) for d in dirs]
        results[name] = pooled_metrics(dirs) if len(dirs) > 1 else per_seed[name][0]
    (out / "sft" / "audit.json").write_text((out / "audit.json").read_text())
    (out / "sft" / "audit.png").write_bytes((out / "audit.png").read_bytes())
    html, md = build_report([load_run(out / n) for n in ("sft", *runs)], out, title="lengthrl demo")
    found = verdicts(per_seed, seeds) if len(seeds) >= 2 else []
    notes = [v.text() for v in found] or ["one seed: no verdict (an interval over training seeds needs >= 2; "
                                          "the demo's default is 4)"]
    ev = build_config(CONFIGS / f"{runs[0]}.toml", overrides)
    how = "greedy" if ev.eval_temperature == 0 else f"temperature {ev.eval_temperature:g}, {ev.eval_samples} samples"
    table = Table(title=f"held-out evaluation ({ev.eval_prompts} prompts, {how}; records pooled over seeds "
                        f"{', '.join(map(str, seeds))}) after training from the same SFT model")
    for col in ("run", "acc", "len mean", "len correct", "len wrong", "acc / 1k tokens", "per-seed len",
                "run time (sum)"):
        table.add_column(col, justify="right")
    for name, m in results.items():
        table.add_row(name, f"{m['acc']:.3f}", f"{m['len/mean']:.1f}", f"{m.get('len/correct_mean') or 0:.1f}",
                      f"{m.get('len/wrong_mean') or 0:.1f}", f"{m.get('acc_per_1k_tokens') or 0:.2f}",
                      " ".join(f"{x['len/mean']:.1f}" for x in per_seed[name]), f"{timings.get(name, 0):.0f}s")
    console.print(table)
    for v, n in zip(found, notes):
        console.print(f"- [bold]{v.status.replace('_', ' ')}[/bold]: {n}")
    wall = time.perf_counter() - t0
    summary = {"results": results, "per_seed": per_seed, "verdicts": [v.to_json() for v in found],
               "notes": notes, "timings_s": timings, "wall_time_s": wall, "jobs": jobs, "overrides": overrides,
               "seeds": list(seeds)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    with open(md, "a") as f:
        f.write("\n## Does the organism reproduce the papers' claims?\n\n")
        f.write(f"Each claim is judged on one held-out value per training seed (seeds {', '.join(map(str, seeds))}), "
                "with a 95% t-interval over the seeds (Welch for a difference of two recipes); `inconclusive` "
                "means the interval contains the paper's threshold. The runs shown above are seed "
                f"{seeds[0]}'s.\n\n" + "".join(f"- {n}\n" for n in notes))
        f.write(f"\nWall time of the whole demo: {wall:.0f} s ({jobs} runs side by side, one torch thread each).\n")
    console.print(f"report: {html} and {md}; wall time {wall:.0f}s")
    return summary


@command("demo", examples=["lengthrl demo --out runs/demo", "lengthrl demo --out runs/quick --steps 5 --eval-prompts 50"])
def run_demo_cmd(args) -> int:
    seeds = tuple(int(x) for x in str(args.seeds).split(",") if x.strip())
    run_demo(Path(args.out), args.steps, args.eval_prompts, seeds, args.model,
             tuple(args.runs.split(",")), args.set, progress=not args.quiet, jobs=args.jobs or default_jobs())
    return 0


@run_demo_cmd.args
def _(p):
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None, help="RL steps per run (default: each recipe's)")
    p.add_argument("--eval-prompts", type=int, default=200, help="held-out prompts per evaluation")
    p.add_argument("--seeds", default="0,1,2,3",
                   help="comma-separated training seeds; each recipe is trained once per seed, and each claim is "
                        "judged over the seeds (>= 2 for an interval)")
    p.add_argument("--model", default=None, help="a local model directory instead of the organism")
    p.add_argument("--runs", default=",".join(DEMO_RUNS), help="recipes from configs/ to train")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--jobs", type=int, default=0,
                   help="runs trained side by side, one torch thread each (default: one per CPU core, at most 4); "
                        "the figures do not depend on it")
    p.add_argument("--quiet", action="store_true")
