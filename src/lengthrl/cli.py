"""The `lengthrl` command line. Subcommands are registered `Command`s (see `lengthrl.commands`); each
module that offers one registers it on import, so this file holds no list of if/elif branches."""

from __future__ import annotations

import argparse
import importlib
import sys

from lengthrl.commands import COMMANDS
from lengthrl.errors import LengthRLError

# Modules that register subcommands. Imported lazily-ish: only their `register` side effect is needed.
COMMAND_MODULES = [
    "lengthrl.objectives.cli",
    "lengthrl.analysis.audit",
    "lengthrl.docsgen",
    "lengthrl.train.cli",
    "lengthrl.rewards.cli",
    "lengthrl.eval.cli",
    "lengthrl.eval.styles",
    "lengthrl.analysis.compare",
    "lengthrl.analysis.report",
    "lengthrl.demo",
    "lengthrl.models.cli",
    "lengthrl.tasks.cli",
    "lengthrl.dllm.cli",
    "lengthrl.control.demo",
]


def build_parser() -> argparse.ArgumentParser:
    for mod in COMMAND_MODULES:
        importlib.import_module(mod)
    lines = [f"  {c.name:<12} {c.help}" for c in COMMANDS.values()]
    parser = argparse.ArgumentParser(
        prog="lengthrl",
        description="RL with verifiable rewards, built around what RL does to response length.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(lines) + "\n\nexamples:\n"
        + "\n".join(f"  {ex}" for c in COMMANDS.values() for ex in c.examples[:1])
        + "\n\nRun `lengthrl COMMAND --help` for a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="examples:\n" + "\n".join(f"  {ex}" for ex in cmd.examples),
        )
        cmd.add_args(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except LengthRLError as e:
        print(f"lengthrl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
