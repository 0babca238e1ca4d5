"""The `lengthrl` command line. Subcommands are registered `Command`s (see `lengthrl.commands`): the index there
names each one with its module and help, so `lengthrl --help` imports none of them and `lengthrl NAME ...`
imports only NAME's module (this file holds no list of if/elif branches)."""

from __future__ import annotations

import argparse
import importlib
import sys

from lengthrl.commands import COMMAND_INDEX, COMMANDS, GETTING_STARTED
from lengthrl.errors import LengthRLError

# every module that registers a subcommand, in the index's order (`build_parser()` with no names imports them all)
COMMAND_MODULES = list(dict.fromkeys(mod for mod, _ in COMMAND_INDEX.values()))


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed; the commands in `names` (default: all) get their arguments, which
    imports their modules; the others are listed by their help only."""
    mods = COMMAND_MODULES if names is None else [COMMAND_INDEX[n][0] for n in names]
    for mod in dict.fromkeys(mods):
        importlib.import_module(mod)
    full = set(COMMAND_INDEX if names is None else names)
    lines = [f"  {name:<12} {help_}" for name, (_, help_) in COMMAND_INDEX.items()]
    parser = argparse.ArgumentParser(
        prog="lengthrl",
        description="RL with verifiable rewards, built around what RL does to response length.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(lines) + "\n\nexamples:\n"
        + "\n".join(f"  {ex}" for ex in GETTING_STARTED)
        + "\n\nRun `lengthrl COMMAND --help` for a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMAND_INDEX.items():
        if name not in full:
            sub.add_parser(name, help=help_, add_help=False)
            continue
        cmd = COMMANDS[name]
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
    argv = sys.argv[1:] if argv is None else list(argv)
    # only the command being run is imported (the first word that is not an option, as argparse reads it)
    name = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([name] if name in COMMAND_INDEX else [])
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except LengthRLError as e:
        print(f"lengthrl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no: one line with the file and what to do
        import errno

        where = f"{e.filename}: " if e.filename else ""
        hint = ("free space on that disk" if e.errno == errno.ENOSPC
                else "check the disk, that the path exists and that it may be written")
        print(f"lengthrl {args.command}: error: {where}{e.strerror or e}; {hint}, then run the command again",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
