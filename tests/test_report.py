"""`lengthrl report` and `lengthrl compare` on synthetic run directories the tests write."""

import argparse
import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lengthrl.analysis import compare as compare_mod  # noqa: F401  (registers the command)
from lengthrl.analysis import report as report_mod  # noqa: F401
from lengthrl.analysis.compare import compare_runs
from lengthrl.analysis.report import build_report
from lengthrl.analysis.runs import load_run
from lengthrl.analysis.synthetic import write_synthetic_run
from lengthrl.commands import COMMANDS
from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.records import read_jsonl


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    grow = write_synthetic_run(root / "grow", steps=40, len_growth=1.6, seed=1)
    collapse = write_synthetic_run(root / "collapse", steps=40, len_growth=0.3, acc_gain=0.0, entropy_decay=0.9,
                                   seed=2)
    (collapse / "audit.json").write_text(json.dumps([{"loss": "grpo", "weight_ratio_long_short": 0.25},
                                                     {"loss": "luspo", "weight_ratio_long_short": 1.0}]))
    shutil.copy(root / "grow" / "eval.json", root / "grow" / "eval_copy.json")
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(collapse / "audit.png")
    return grow, collapse


def _cli(name, argv):
    cmd = COMMANDS[name]
    p = argparse.ArgumentParser()
    cmd.add_args(p)
    return cmd.run(p.parse_args(argv))


def test_load_run(two_runs):
    run = load_run(two_runs[0])
    assert run.name == "grow" and len(run.metrics) == 40 and len(run.samples) == 40 * 32
    assert set(run.evals) == {"eval", "copy"}
    assert run.series("len/mean")[0][:3] == [0.0, 1.0, 2.0]
    with pytest.raises(ConfigError, match="no eval named 'nope'"):
        run.main_eval("nope")
    with pytest.raises(ConfigError, match="no such run directory"):
        load_run(two_runs[0] / "missing")


def test_report_html_and_markdown(two_runs, tmp_path):
    out = tmp_path / "rep"
    assert _cli("report", [str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    # self-contained: every image is an embedded PNG, nothing is fetched
    srcs = re.findall(r"src='([^']*)'", page)
    assert len(srcs) >= 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(href|src)=['\"]?(https?:)?//", page)
    # the collapsing run is flagged, the growing one is not
    sec = page.split("<h3>collapse</h3>")[1].split("</ul>")[0]
    assert "length collapse at step" in sec
    assert "collapse at step" not in page.split("<h3>grow</h3>")[1].split("</ul>")[0]
    assert "weight_ratio_long_short" in page and "luspo" in md  # audit table
    assert (out / "report_files" / "audit_collapse.png").exists() and "alt='audit'" in page
    assert "length-controlled win rate" in page and "Head to head" in md
    assert "Sample responses" in page and "think think" in page
    assert (out / "report_files" / "dynamics.png").exists() and "Length dynamics" in page
    assert (out / "report_files" / "curves.png").exists() and "](report_files/curves.png)" in md
    # summary numbers come from the logs: the final len/mean of each run appears in the table
    last = read_jsonl(two_runs[1] / "metrics.jsonl")[-1]["len/mean"]
    assert f"{last:.4g}" in page


def test_compare(two_runs, tmp_path, capsys):
    runs = [load_run(p) for p in two_runs]
    res = compare_runs(runs)
    assert res["runs"] == ["grow", "collapse"]
    t = res["table"]
    assert t["aes_vs_first"][0] == 0.0  # the baseline against itself
    assert t["len/mean"][1] < t["len/mean"][0]
    lc = res["lc"][0]
    assert 0 <= lc["raw_win_rate"] <= 1 and 0 <= lc["lc_win_rate"] <= 1 and lc["converged"]
    out = tmp_path / "cmp"
    assert _cli("compare", [str(two_runs[0]), str(two_runs[1] / "eval.json"), "--out", str(out)]) == 0
    assert json.loads((out / "compare.json").read_text())["lc"][0]["n_pairs"] > 0
    assert (out / "frontier.png").exists() and (out / "win_rates.png").exists()
    assert "length-controlled" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="at least two"):
        compare_runs(runs[:1])


def test_bad_run_files(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"step": 0}\n{not json\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2"):
        load_run(d)


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium (/usr/bin/chromium)")
def test_report_renders_in_headless_chromium(two_runs, tmp_path):
    out = tmp_path / "rep"
    html_path, _ = build_report([load_run(two_runs[0])], out)
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
         "--window-size=1200,2400", f"--screenshot={shot}", html_path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400)
    # a rendered page with plots is not blank: many distinct colours
    colours = img.resize((300, 600)).getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 50


def test_through_the_cli_entry_point(two_runs, tmp_path, monkeypatch, capsys):
    from lengthrl import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["lengthrl.eval.cli", "lengthrl.analysis.compare",
                                                 "lengthrl.analysis.report"])
    assert cli.main(["report", str(two_runs[0] / "eval.json"), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").exists()
    assert cli.main(["compare", str(two_runs[0])]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(tmp_path), "--task", "x", "--samples", "2", "--k", "4"]) == 2
    assert "--k 4: each k must be <= --samples (2)" in capsys.readouterr().err


def test_report_survives_nan_metric(tmp_path):
    run = write_synthetic_run(tmp_path / "nan", steps=6, eval_prompts=4, seed=3)
    rows = read_jsonl(run / "metrics.jsonl")
    rows[2]["len/mean"] = float("nan")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    h, _ = build_report([load_run(run)], tmp_path / "out")
    assert "collapse check skipped: step 2: metric &#x27;len/mean&#x27; is NaN" in h.read_text()
