"""`lengthrl verdict`: judge a claim over training seeds from run directories (or eval files).

    lengthrl verdict runs/lenacc/gspo-s0 runs/lenacc/gspo-s1 ... --vs runs/lenacc/luspo-s0 ... \
        --metric len/mean --threshold 0 --claim "LUSPO ends longer than GSPO" --paper "LUSPO, arXiv 2602.05261"

Each run gives one value: its held-out `--metric` from eval.json, or with `--slope` the least-squares slope
per step of a training metric in its metrics.jsonl (e.g. `--slope len/wrong_mean`: how fast wrong answers
grow). With `--vs`, the estimate is mean(vs) - mean(runs) with a Welch interval; without, the mean of the runs
with a t-interval. The status compares the interval with `--threshold` (lengthrl.analysis.verdicts).
"""

from __future__ import annotations

import json
from pathlib import Path

from lengthrl.analysis.verdicts import judge_diff, judge_one
from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.eval.records import load_eval, read_jsonl


def run_value(path: str, metric: str, eval_name: str = "eval") -> float:
    """`metric` of a run's held-out evaluation: PATH/<eval_name>.json, or PATH itself when it is a file."""
    p = Path(path)
    f = p if p.is_file() else p / f"{eval_name}.json"
    if not f.is_file():
        raise ConfigError(f"verdict: {path} has no {f.name}; evaluate it first (`lengthrl eval --model "
                          f"{path}/final --out {path}/{eval_name}.json`) or pass the eval file itself")
    metrics = load_eval(f).metrics
    v = metrics.get(metric)
    if not isinstance(v, (int, float)):
        keys = ", ".join(sorted(k for k, x in metrics.items() if isinstance(x, (int, float))))
        raise ConfigError(f"verdict: --metric {metric!r} is not a number in {f}; numeric metrics: {keys}")
    return float(v)


def run_slope(path: str, metric: str, from_step: int = 0) -> float:
    """Least-squares slope per step of `metric` over the rows of PATH/metrics.jsonl with step >= `from_step`
    (rows without the metric, e.g. a step with no wrong answer, are left out)."""
    f = Path(path) / "metrics.jsonl"
    if not f.is_file():
        raise ConfigError(f"verdict --slope: {path} has no metrics.jsonl; give training run directories")
    pts = [(float(row.get("step", i)), float(row[metric])) for i, row in enumerate(read_jsonl(f))
           if isinstance(row.get(metric), (int, float)) and row.get("step", i) >= from_step]
    if len(pts) < 2:
        raise ConfigError(f"verdict --slope: {f} has {len(pts)} row(s) with a number for {metric!r} from step "
                          f"{from_step}; a slope needs >= 2 (is the metric name right? e.g. len/wrong_mean)")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        raise ConfigError(f"verdict --slope: every row of {f} is at one step; a slope needs several steps")
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


@command("verdict", examples=[
    "lengthrl verdict runs/gspo-s0 runs/gspo-s1 runs/gspo-s2 runs/gspo-s3 --vs runs/luspo-s0 runs/luspo-s1 "
    "runs/luspo-s2 runs/luspo-s3 --metric len/mean --claim 'LUSPO ends longer than GSPO'",
    "lengthrl verdict runs/dler-s0 runs/dler-s1 runs/dler-s2 --metric acc --threshold 0.3",
    "lengthrl verdict runs/dr_grpo-s0 runs/dr_grpo-s1 --vs runs/grpo-s0 runs/grpo-s1 --slope len/wrong_mean"])
def run_verdict(args) -> int:
    if args.slope:
        def value(r):
            return run_slope(r, args.slope, args.from_step)
        what = f"slope of training {args.slope} per step"
    else:
        def value(r):
            return run_value(r, args.metric, args.eval)
        what = f"held-out {args.metric}"
    a = [value(r) for r in args.runs]
    claim = args.claim or (f"{what} of {'the --vs runs minus the runs' if args.vs else 'the runs'} is "
                           f"{args.direction} {args.threshold:g}")
    if args.vs:
        b = [value(r) for r in args.vs]
        v = judge_diff(claim, args.paper, f"{what}, mean(--vs) - mean(runs)", "runs", a, "vs", b,
                       args.threshold, args.direction)
    else:
        v = judge_one(claim, args.paper, f"{what}, mean over runs", a, args.threshold, args.direction)
    print(f"{v.status}: {v.text()}")
    if args.out:
        Path(args.out).write_text(json.dumps({**v.to_json(), "runs": list(args.runs), "vs": list(args.vs or [])},
                                             indent=1))
    return 0


@run_verdict.args
def _(p):
    p.add_argument("runs", nargs="+", help="run directories (one per training seed) or their eval files")
    p.add_argument("--vs", nargs="+", default=None, help="a second recipe's runs: judge mean(vs) - mean(runs)")
    p.add_argument("--metric", default="len/mean", help="held-out metric of eval.json (default: len/mean)")
    p.add_argument("--slope", default=None, metavar="METRIC",
                   help="judge the least-squares slope per step of this training metric (metrics.jsonl) instead, "
                        "e.g. len/wrong_mean")
    p.add_argument("--from-step", type=int, default=0, help="with --slope: fit from this step on (default 0)")
    p.add_argument("--threshold", type=float, default=0.0, help="where the claim's side begins (default: 0)")
    p.add_argument("--direction", choices=("above", "below"), default="above",
                   help="the claim holds above (default) or below the threshold")
    p.add_argument("--claim", default="", help="the claim in words, for the report")
    p.add_argument("--paper", default="", help="the paper that makes the claim (name, arXiv id)")
    p.add_argument("--eval", default="eval", help="eval file name inside each run (default: eval -> eval.json)")
    p.add_argument("--out", default=None, help="write the verdict as JSON here")
