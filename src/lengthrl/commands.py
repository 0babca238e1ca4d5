"""The registry of CLI subcommands.

`COMMAND_INDEX` names every subcommand, the module that defines it and its one-line help, so `lengthrl --help`
lists them all without importing any (imports of torch, transformers and the tasks take seconds); `lengthrl
NAME ...` imports only NAME's module, whose `@command(NAME, examples=[...])` registers its `run` and arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from lengthrl.registry import Registry

# name -> (module that registers it, one-line help); in the order `lengthrl --help` lists them
COMMAND_INDEX: dict[str, tuple[str, str]] = {
    "losses": ("lengthrl.objectives.cli",
               "list the registered policy losses with formula, defaults and length weighting"),
    "advantages": ("lengthrl.objectives.cli", "list the registered advantage estimators"),
    "audit": ("lengthrl.analysis.audit",
              "length-bias audit: per-token gradient weight of every loss for short/long, +/- responses "
              "(--against trl|verl: the installed framework's own loss code beside lengthrl's)"),
    "docs": ("lengthrl.docsgen", "regenerate the registry-driven pages of docs/"),
    "train": ("lengthrl.train.cli",
              "train a policy with any loss and length reward; metrics, samples and checkpoints in --out"),
    "config": ("lengthrl.train.cli",
               "show every training config key with type, default and doc, or a resolved config"),
    "sft": ("lengthrl.models.sft_cli",
            "supervised warm-up of your model on a data file (the RL data loader), so it answers in the "
            "task's format before RL"),
    "rewards": ("lengthrl.rewards.cli",
                "list the length-aware rewards (formula, paper, hyperparameters) or evaluate one"),
    "eval": ("lengthrl.eval.cli",
             "Evaluate a model: accuracy, pass@k, length split by correctness, truncation, AES."),
    "styles": ("lengthrl.eval.styles", "accuracy, mean length and share per solution style "
               "(concise/steps/verbose/other) of procedural-task eval files"),
    "compare": ("lengthrl.analysis.compare",
                "Compare runs side by side, with a length-controlled win rate against the first run."),
    "report": ("lengthrl.analysis.report",
               "Write an HTML report (self-contained) and a markdown summary of one or more runs."),
    "demo": ("lengthrl.demo",
             "the main job: organism -> GSPO, LUSPO, DLER from one SFT checkpoint -> eval, report, audit"),
    "organism": ("lengthrl.models.cli", "the tiny model organism: the shipped build, or (--rebuild, other "
                 "settings) SFT from scratch on this CPU"),
    "tasks": ("lengthrl.tasks.cli",
              "list tasks, prompt templates and answer rules; preview a task or check a data file"),
    "dllm": ("lengthrl.dllm.cli", "diffusion LMs: JustGRPO and the flexibility-trap pass@k analysis"),
    "verdict": ("lengthrl.analysis.verdict_cli",
                "judge a claim over training seeds: runs of one recipe (or two) with an interval over the seeds"),
    "experiments-report": ("lengthrl.analysis.experiments",
                           "per-seed table and length curves of the runs of `make experiments` (a)-(c)"),
    "demo-budget": ("lengthrl.control.demo",
                    "Lagrangian length controller vs DLER, L1, Kimi at one budget: table, plots, curves"),
}

# the examples of `lengthrl --help` (each command's own are in `lengthrl COMMAND --help`)
GETTING_STARTED = [
    "lengthrl demo --out runs/demo",
    "lengthrl train --config configs/luspo.toml --out runs/luspo",
    "lengthrl eval --model runs/luspo/final --task count_letters --samples 16 --k 1,4,16",
    "lengthrl tasks --show data:train.jsonl --arg prompt_field=question --arg answer_rule=hash",
]


@dataclass
class Command:
    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    examples: list[str] = field(default_factory=list)


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, examples: list[str]):
    """Decorator for a `run(args)` function of the command `name` (which must be in COMMAND_INDEX, where its
    help is); `add_args` is attached with `@<run>.args`."""
    if name not in COMMAND_INDEX:
        raise KeyError(f"command {name!r} is not in lengthrl.commands.COMMAND_INDEX; add it there")

    def deco(run):
        cmd = Command(name=name, help=COMMAND_INDEX[name][1], add_args=lambda p: None, run=run, examples=examples)
        COMMANDS.register(name, cmd)

        def set_args(fn):
            cmd.add_args = fn
            return fn

        run.args = set_args
        return run

    return deco
