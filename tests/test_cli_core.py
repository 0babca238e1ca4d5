"""The CLI frame, the audit command and the generated docs."""

import json
import subprocess
import sys
from pathlib import Path

from lengthrl.cli import build_parser, main
from lengthrl.commands import COMMANDS
from lengthrl.docsgen import PAGES
from lengthrl.objectives import LOSSES

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command_with_examples(capsys):
    parser = build_parser()
    text = parser.format_help()
    for name, cmd in COMMANDS.items():
        assert name in text
        assert cmd.examples, f"command {name} has no examples"


def test_audit_command_writes_table_json_and_plot(tmp_path, capsys):
    rc = main(["audit", "--out", str(tmp_path), "--lengths", "4,32"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "luspo" in out and "MISMATCH" not in out
    rows = json.loads((tmp_path / "audit.json").read_text())
    # every loss under its own aggregation, then grpo's term under prompt-mean
    assert len(rows) == (len(LOSSES) + 1) * 2 * 2 and all(r["ok"] for r in rows)
    assert [r["agg"] for r in rows[-4:]] == ["prompt-mean"] * 4
    # grpo: a long response's token gets |y_short|/|y_long| of a short one's weight; luspo: the same
    g = {(r["loss"], r["length"], r["advantage"]): r["per_token_weight"] for r in rows if not r["agg"]}
    assert g[("grpo", 32, 1.0)] / g[("grpo", 4, 1.0)] == 4 / 32
    assert g[("luspo", 32, 1.0)] == g[("luspo", 4, 1.0)]
    assert (tmp_path / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_a_clean_error(capsys):
    assert main(["audit", "--losses", "nope", "--out", "/tmp/x"]) == 2
    assert "valid names: grpo" in capsys.readouterr().err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "lengthrl", "--help"], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "audit" in r.stdout


def test_generated_docs_are_up_to_date():
    for name, fn in PAGES.items():
        assert (ROOT / "docs" / name).read_text() == fn(), f"docs/{name} is stale: run `lengthrl docs`"
