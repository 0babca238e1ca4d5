"""`lengthrl rewards`: list the registered length rewards with formula, paper and hyperparameters."""

from __future__ import annotations

import json

from lengthrl.commands import command
from lengthrl.rewards import LENGTH_REWARDS, length_reward
from lengthrl.rewards.probe import probe
from lengthrl.rewards.registry import REQUIRED


def _hp(spec) -> str:
    return ", ".join(f"{k}" if v is REQUIRED else f"{k}={v}" for k, v in spec.defaults.items()) or "-"


@command(
    "rewards",
    examples=[
        "lengthrl rewards",
        "lengthrl rewards --name dler",
        "lengthrl rewards --probe",
        "lengthrl rewards --name dapo_overlong --lengths 10,50,60,70 --correct 1,1,0,1 --group-size 4 "
        "--hparams '{\"max_len\": 64, \"cache_len\": 16}'",
    ],
)
def run(args) -> int:
    if args.probe:
        rows = probe(seed=args.seed)
        print(f"{'reward':<15} {'pressure':>9} {'correct':>9} {'wrong':>9}   (cov(A, L)/mean L per group; < 0 = shorter)")
        for r in rows:
            print(f"{r['name']:<15} {r['pressure']:>9.4f} {r['pressure_correct']:>9.4f} {r['pressure_wrong']:>9.4f}")
        return 0
    names = [args.name] if args.name else LENGTH_REWARDS.names()
    specs = [LENGTH_REWARDS[n] for n in names]  # unknown name -> UnknownNameError listing valid ones
    if args.lengths is not None:
        lengths = [int(x) for x in args.lengths.split(",")]
        correct = [int(x) for x in args.correct.split(",")] if args.correct else [1] * len(lengths)
        hp = json.loads(args.hparams) if args.hparams else {}
        for spec in specs:
            r = length_reward(spec.name, lengths, correct, args.group_size or len(lengths), **hp)
            print(f"{spec.name}: " + ", ".join(f"{v:.4f}" for v in r.tolist()))
        return 0
    for spec in specs:
        print(f"{spec.name:<15} [{spec.paper}]{'  (advantage-like)' if spec.kind == 'advantage' else ''}")
        print(f"    {spec.formula}")
        print(f"    hyperparameters: {_hp(spec)}; includes correctness: {'yes' if spec.includes_correctness else 'no'}")
    return 0


@run.args
def _args(p):
    p.add_argument("--name", help="show one reward only")
    p.add_argument("--lengths", help="comma-separated token lengths: evaluate the reward(s) on them")
    p.add_argument("--correct", help="comma-separated 0/1 flags (default all 1)")
    p.add_argument("--group-size", type=int, help="responses per prompt (default: all in one group)")
    p.add_argument("--hparams", help="JSON dict of hyperparameters, e.g. '{\"max_len\": 64}'")
    p.add_argument("--probe", action="store_true",
                   help="measure each reward's push on length on a synthetic batch (GRPO advantages)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --probe batch")
