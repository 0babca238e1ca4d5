"""`lengthrl dllm ...`: the diffusion-LM commands (actions registered in `ACTIONS`)."""

from __future__ import annotations

import argparse

from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.registry import Registry

ACTIONS: Registry = Registry("dllm action")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _passk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/dllm", help="output directory (organism/, train/, results.json, "
                   "passk.md/png)")
    p.add_argument("--task", default=None, help="a registered task (e.g. arith_chain); default: dllm_addition")
    p.add_argument("--max-operand", type=int, default=19, help="dllm_addition operands in [0, N]")
    p.add_argument("--gen-length", type=int, default=4, help="generation canvas length (0: longest solution + 1)")
    p.add_argument("--pretrain-steps", type=int, default=800)
    p.add_argument("--pretrain-fraction", type=float, default=1.0,
                   help="share of the train split used for pre-training (RL always uses all of it)")
    p.add_argument("--test-prompts", type=int, default=None, help="evaluate on the first N test prompts")
    p.add_argument("--n", type=int, default=16, help="samples per prompt for pass@k")
    p.add_argument("--ks", type=_ints, default=(1, 2, 4, 8, 16), help="k values, e.g. 1,2,4,8,16")
    p.add_argument("--grpo-steps", type=int, default=60, help="training steps (config key steps)")
    p.add_argument("--group-size", type=int, default=8, help="config key group_size")
    p.add_argument("--prompts-per-step", type=int, default=8, help="config key prompts_per_step")
    p.add_argument("--lr", type=float, default=3e-5, help="JustGRPO learning rate (AdamW; config key lr)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config key (those of configs/justgrpo_organism.toml)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _passk(args: argparse.Namespace) -> int:
    import torch

    from lengthrl.dllm.experiment import FlexibilityConfig, run_flexibility_experiment

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gen_length < 0:
        raise ConfigError(f"--gen-length must be >= 1 (or 0 for automatic), got {args.gen_length}")
    cfg = FlexibilityConfig(
        task=args.task, max_operand=args.max_operand, gen_length=args.gen_length,
        pretrain_steps=args.pretrain_steps, test_prompts=args.test_prompts,
        pretrain_fraction=args.pretrain_fraction, n=args.n, ks=args.ks, seed=args.seed)
    sets = [f"steps={args.grpo_steps}", f"group_size={args.group_size}",
            f"prompts_per_step={args.prompts_per_step}", f"lr={args.lr!r}", *args.set]
    run_flexibility_experiment(args.out, cfg, sets, progress=not args.quiet)
    print(open(f"{args.out}/passk.md").read())
    return 0


ACTIONS.register("passk", (_passk_args, _passk,
                           "build an organism, then pass@k of AR-order vs arbitrary-order sampling before/after "
                           "JustGRPO through `lengthrl train` (+ tables, plot)"))


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo-dllm", help="output directory (results.json, passk.md/png, train/)")
    p.add_argument("--config", default=None, help="a training config with policy = 'diffusion' (default: the one "
                   "of configs/justgrpo_organism.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--n", type=int, default=16, help="samples per prompt for pass@k")
    p.add_argument("--ks", type=_ints, default=(1, 2, 4, 8, 16), help="k values, e.g. 1,2,4,8,16")
    p.add_argument("--test-prompts", type=int, default=None, help="evaluate on the first N test prompts")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _demo(args: argparse.Namespace) -> int:
    import torch

    from lengthrl.dllm.demo import run_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    run_demo(args.out, args.config, args.set, n=args.n, ks=args.ks, test_prompts=args.test_prompts,
             progress=not args.quiet)
    print(open(f"{args.out}/passk.md").read())
    return 0


ACTIONS.register("demo", (_demo_args, _demo, "JustGRPO of the diffusion organism through `lengthrl train`, with "
                          "accuracy (AR and parallel decoding) and pass@k (AR vs confidence order) before/after"))


def _knob(text: str) -> tuple[str, int | float]:
    key, sep, value = text.partition("=")
    try:
        if not sep or not key:
            raise ValueError
        return key, (float(value) if "." in value else int(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEY=NUMBER (a dllm_fork knob), got {text!r}") from None


def _fork_args(p: argparse.ArgumentParser) -> None:
    from lengthrl.dllm.fork import FORK_TASK_ARGS, FORK_TRAIN_SETS

    p.add_argument("--out", default="runs/experiments/fork", help="output directory (seed<S>/, summary.json, "
                   "fork.md, fork.png)")
    p.add_argument("--seeds", type=_ints, default=(0, 1, 2, 3), help="pre-training and training seeds, e.g. 0,1,2,3")
    p.add_argument("--task-arg", type=_knob, action="append", default=[], metavar="KEY=VALUE",
                   help=f"a dllm_fork knob (options, digits, close_fraction); default {FORK_TASK_ARGS}")
    p.add_argument("--pretrain-steps", type=int, default=800, help="SFT (masked-diffusion) steps per seed")
    p.add_argument("--n", type=int, default=64, help="samples per prompt for pass@k")
    p.add_argument("--ks", type=_ints, default=(1, 2, 4, 8, 16, 32, 64), help="k values (must include 1)")
    p.add_argument("--test-prompts", type=int, default=200, help="held-out prompts (the test split has 200)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a JustGRPO config key (after the experiment's own: {' '.join(FORK_TRAIN_SETS)})")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _fork(args: argparse.Namespace) -> int:
    import torch

    from lengthrl.dllm.fork import FORK_TASK_ARGS, FORK_TRAIN_SETS, ForkConfig, run_fork_experiment

    if args.threads:
        torch.set_num_threads(args.threads)
    if any(k < 1 or k > args.n for k in args.ks):
        raise ConfigError(f"--ks: every k must be in [1, --n={args.n}], got {args.ks}")
    cfg = ForkConfig(seeds=args.seeds, task_args={**FORK_TASK_ARGS, **dict(args.task_arg)},
                     pretrain_steps=args.pretrain_steps, n=args.n, ks=args.ks, test_prompts=args.test_prompts,
                     sets=(*FORK_TRAIN_SETS, *args.set))
    run_fork_experiment(args.out, cfg, progress=not args.quiet)
    print(open(f"{args.out}/fork.md").read())
    return 0


ACTIONS.register("fork", (_fork_args, _fork,
                          "the flexibility trap over seeds on dllm_fork: per seed an SFT organism, pass@k of AR vs "
                          "confidence order before/after JustGRPO, verdicts over the seeds (summary.json, fork.md/png)"))


@command("dllm", examples=["lengthrl dllm demo --out runs/demo-dllm",
                   "lengthrl dllm demo --set steps=20 --set lr=1e-4 --test-prompts 50",
                   "lengthrl dllm passk --out runs/dllm --grpo-steps 60 --lr 3e-5",
                   "lengthrl dllm passk --n 32 --ks 1,2,4,8,16,32 --max-operand 9",
                   "lengthrl dllm fork --out runs/experiments/fork --seeds 0,1,2,3 --threads 1"])
def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.dllm_action][1](args)


@run.args
def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dllm_action", metavar="ACTION", required=True)
    for name, (add, _, help_) in ACTIONS.items():
        add(sub.add_parser(name, help=help_, description=help_))
