"""The command line imports lazily: `lengthrl --help` imports no command module (no torch), `lengthrl NAME`
imports only NAME's module, and the index of commands agrees with what the modules register. (Start-up time is
measured in benchmarks/bench_cli.py, not here.)"""

import json
import subprocess
import sys
from pathlib import Path

from lengthrl.cli import build_parser
from lengthrl.commands import COMMAND_INDEX, COMMANDS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "transformers", "lengthrl.train.loop", "lengthrl.tasks", "lengthrl.dllm.model", "lengthrl.eval.runner"]


def _modules_after(code: str) -> set[str]:
    prog = (f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


def test_help_imports_no_command_module():
    mods = _modules_after("import contextlib, io, lengthrl.cli\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    try:\n        lengthrl.cli.main(['--help'])\n    except SystemExit:\n        pass")
    assert not [m for m in HEAVY if m in mods]
    assert not [m for m, _ in COMMAND_INDEX.values() if m in mods]


def test_train_help_imports_only_the_train_command():
    mods = _modules_after("import contextlib, io, lengthrl.cli\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    try:\n        lengthrl.cli.main(['train', '--help'])\n    except SystemExit:\n        pass")
    assert "lengthrl.train.cli" in mods and "torch" not in mods and "lengthrl.train.loop" not in mods
    assert "lengthrl.eval.cli" not in mods


def test_index_agrees_with_the_registered_commands():
    build_parser()  # imports every command module
    assert set(COMMANDS) == set(COMMAND_INDEX)
    for name, (module, help_) in COMMAND_INDEX.items():
        assert COMMANDS[name].run.__module__ == module and COMMANDS[name].help == help_


def test_top_level_help_lists_every_command_and_runs_one(capsys):
    from lengthrl.cli import main

    try:
        main(["--help"])
    except SystemExit:
        pass
    text = capsys.readouterr().out
    assert all(name in text for name in COMMAND_INDEX)
    assert main(["losses", "--name", "luspo"]) == 0 and "luspo" in capsys.readouterr().out


def test_getting_started_examples_name_real_tasks():
    import re

    from lengthrl.commands import GETTING_STARTED
    from lengthrl.tasks import TASKS

    named = [(m[0] or m[1]).split(":")[0] for ex in GETTING_STARTED
             for m in re.findall(r"--task[ =]([\w:]+)|--show ([\w:.]+)", ex)]
    assert named and all(t in TASKS for t in named)
