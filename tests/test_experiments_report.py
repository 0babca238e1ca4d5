"""`lengthrl experiments-report` on hand-made run directories: per-seed figures, means, slope, the figure."""

import json

import pytest

from lengthrl.analysis.experiments import collect, markdown
from lengthrl.cli import main


def _run(d, acc, length, wrong, clip=0.01):
    d.mkdir(parents=True)
    rows = [{"step": s, "len/mean": 20 + s, "len/wrong_mean": wrong(s), "clip_frac_tok": clip, "clip_frac_seq": 2 * clip}
            for s in range(1, 11)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (d / "eval.json").write_text(json.dumps({"model": "m", "task": "t", "n_samples": 1,
                                             "metrics": {"acc": acc, "len/mean": length}, "records": []}))


def test_report_by_hand(tmp_path, capsys):
    _run(tmp_path / "grpo-s0", 0.5, 30.0, lambda s: 2.0 * s)
    _run(tmp_path / "grpo-s1", 0.7, 40.0, lambda s: 4.0 * s)
    _run(tmp_path / "gspo-offpolicy-s0", 0.6, 35.0, lambda s: 1.0, clip=0.1)
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "grpo-s2").mkdir()  # unfinished: no eval.json, left out
    t = collect(tmp_path)
    assert set(t) == {"grpo", "gspo-offpolicy"} and set(t["grpo"]) == {0, 1}
    assert t["grpo"][1]["wrong_len_slope"] == pytest.approx(4.0) and t["gspo-offpolicy"][0]["wrong_len_slope"] == 0
    assert t["grpo"][0]["train_len_first5"] == pytest.approx(23) and t["grpo"][0]["train_len_last5"] == pytest.approx(28)
    assert t["gspo-offpolicy"][0]["clip_frac_seq"] == pytest.approx(0.2)
    md = markdown(t)
    assert "| grpo | 2 | 0.600 (0.500, 0.700) | 35.0 (30.0, 40.0) |" in md and "+3.000 (+2.000, +4.000)" in md
    png = tmp_path / "c.png"
    assert main(["experiments-report", str(tmp_path), "--png", str(png), "--json", str(tmp_path / "r.json")]) == 0
    assert png.stat().st_size > 1000 and json.loads((tmp_path / "r.json").read_text())["grpo"]["0"]["acc"] == 0.5
    assert "| grpo | 2 |" in capsys.readouterr().out


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["experiments-report", str(tmp_path / "nope")]) == 2
    assert "run `make experiments` first" in capsys.readouterr().err
    assert main(["experiments-report", str(tmp_path)]) == 2
    assert "no finished run" in capsys.readouterr().err
