"""The registry of CLI subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from lengthrl.registry import Registry


@dataclass
class Command:
    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    examples: list[str] = field(default_factory=list)


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, examples: list[str]):
    """Decorator for a `run(args)` function; `add_args` is attached with `@<run>.args`."""

    def deco(run):
        cmd = Command(name=name, help=help, add_args=lambda p: None, run=run, examples=examples)
        COMMANDS.register(name, cmd)

        def set_args(fn):
            cmd.add_args = fn
            return fn

        run.args = set_args
        return run

    return deco
