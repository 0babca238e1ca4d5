"""Solution-style classification of procedural responses, the per-style summary of an eval file, and the
`lengthrl organism --knob` parser."""

from __future__ import annotations

import json

import pytest

from lengthrl.cli import main
from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.styles import SHAPES, classify_style, eval_file_styles, style_summary
from lengthrl.models.organism import knob_defaults, parse_knobs
from lengthrl.tasks.procedural import PROCEDURAL_TASKS, STYLES, make_procedural_task


@pytest.mark.parametrize("task", list(PROCEDURAL_TASKS))
def test_every_task_trace_is_classified_as_its_style(task):
    assert set(SHAPES) == set(PROCEDURAL_TASKS)
    for s in make_procedural_task(task).samples("train", 30, seed=3):
        for style in STYLES:
            trace = s.meta["traces"][style]
            assert classify_style(trace, task) == style, (task, style, trace)
            assert classify_style(trace) == style  # without the task: the first task whose shapes fit
            assert classify_style(trace + "\n  ", task) == style  # trailing whitespace is ignored


def test_long_count_letters_traces_keep_their_style():
    task = make_procedural_task("count_letters", min_len=8, max_len=14, alphabet="ab")
    for s in task.samples("test", 20):
        assert [classify_style(s.meta["traces"][st], "count_letters") for st in STYLES] == list(STYLES)


@pytest.mark.parametrize("text", [
    "", "3", "<answer>3", "banana", "<answer>3</answer>\nmore",  # no final answer line
    "a0 b1\nb not a, 1\n<answer>1</answer>",  # steps and verbose mixed
    "a not b, 0\nb is b, 1\n<answer>1</answer>",  # verbose lines without the check line
    "a0 b1 b\n<answer>1</answer>",  # a cut running count
    "d not b0 d0 a0 b, 0\ncheck: d at is cr>0\n<answer>1</answer>",  # garbled (seen in a real eval file)
])
def test_garbage_is_other(text):
    assert classify_style(text, "count_letters") == "other"
    assert classify_style(text) == "other"


def test_a_wrong_running_count_is_still_steps():
    assert classify_style("a0 b5 b9\n<answer>7</answer>", "count_letters") == "steps"


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(ConfigError, match="no trace shapes for task .gsm8k.; valid: "):
        classify_style("<answer>1</answer>", "gsm8k")


def _rec(pid, response, correct, length=None):
    return {"prompt_id": pid, "sample_idx": 0, "length": length or len(response) + 1, "correct": correct,
            "response": response}


RECORDS = [
    _rec("p1", "<answer>3</answer>", True),
    _rec("p2", "<answer>2</answer>", False),
    _rec("p3", "<answer>4</answer>", False),
    _rec("p4", "a1 b1 a2\n<answer>2</answer>", True),
    _rec("p5", "a not b, 0\nb is b, 1\ncheck: b at 2, total 1 ok\n<answer>1</answer>", True),
    _rec("p6", "a0 b", False, length=128),
]


def test_style_summary_on_a_hand_made_eval_file(tmp_path, capsys):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"model": "m", "task": "count_letters", "n_samples": 1, "metrics": {},
                                "records": RECORDS}))
    s = eval_file_styles(path)
    assert {k: v["n"] for k, v in s.items()} == {"concise": 3, "steps": 1, "verbose": 1, "other": 1, "all": 6}
    assert s["concise"]["acc"] == pytest.approx(1 / 3) and s["concise"]["len"] == 19
    assert s["steps"]["acc"] == 1.0 and s["steps"]["len"] == 28
    assert s["verbose"]["share"] == pytest.approx(1 / 6) and s["other"]["len"] == 128
    assert s["all"]["acc"] == pytest.approx(0.5) and s["all"]["share"] == 1.0
    assert main(["styles", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[str(path)]["steps"]["n"] == 1
    assert s["concise"]["acc_se"] == pytest.approx(((1 / 3) * (2 / 3) / 3) ** 0.5)
    assert main(["styles", str(path)]) == 0
    assert "verbose" in capsys.readouterr().out
    pooled = eval_file_styles([path, path])
    assert pooled["concise"]["n"] == 6 and pooled["concise"]["acc"] == s["concise"]["acc"]
    assert main(["styles", str(path), str(path), "--pool", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[f"{path} + {path}"]["all"]["n"] == 12


def test_style_summary_empty_style_and_errors(tmp_path, capsys):
    s = style_summary(RECORDS[:1])
    assert s["steps"] == {"n": 0, "share": 0.0, "acc": None, "acc_se": None, "len": None}
    with pytest.raises(DataError, match="no records"):
        style_summary([])
    assert main(["styles", str(tmp_path / "missing.json")]) == 2
    assert "eval file not found" in capsys.readouterr().err


def test_parse_knobs_types_and_tasks():
    got = parse_knobs(["count_letters.min_len=8", "count_letters.max_len=14", "count_letters.alphabet=ab",
                       "count_letters.style_weights=1,2,2", "sort_digits.max_len=6"])
    assert got == {"count_letters": {"min_len": 8, "max_len": 14, "alphabet": "ab", "style_weights": (1.0, 2.0, 2.0)},
                   "sort_digits": {"max_len": 6}}
    assert parse_knobs(["count_letters.test_fraction=0.2"]) == {"count_letters": {"test_fraction": 0.2}}
    assert parse_knobs(None) == {}
    assert parse_knobs(["add_chain.labelled=True"]) == {"add_chain": {"labelled": True}}
    assert set(knob_defaults("count_letters")) == {"style_weights", "test_fraction", "min_len", "max_len", "alphabet"}


@pytest.mark.parametrize("item, message", [
    ("count_letters.foo=1", "count_letters has no knob 'foo'; valid knobs: count_letters.style_weights, "
                            "count_letters.test_fraction, count_letters.min_len, count_letters.max_len, "
                            "count_letters.alphabet"),
    ("nope.max_len=3", "unknown task 'nope'; valid: arith_chain, count_letters, sort_digits, long_add, add_chain"),
    ("count_letters.max_len=abc", "count_letters.max_len takes an integer, got 'abc'"),
    ("count_letters.max_len=1.5", "count_letters.max_len takes an integer"),
    ("count_letters.test_fraction=x", "count_letters.test_fraction takes a number"),
    ("count_letters.style_weights=1,x", "count_letters.style_weights takes comma-separated numbers"),
    ("count_letters.max_len", "expects TASK.KNOB=VALUE"),
    ("max_len=14", "expects TASK.KNOB=VALUE"),
    ("count_letters.max_len=", "expects TASK.KNOB=VALUE"),
    ("count_letters.alphabet=AB", "alphabet must hold >= 2 distinct lowercase letters"),
    ("count_letters.max_len=2", "need 1 <= min_len <= max_len"),
    ("add_chain.labelled=yes", "add_chain.labelled takes true or false, got 'yes'"),
])
def test_bad_knobs_are_clear_errors(item, message):
    with pytest.raises(ConfigError, match="--knob") as e:
        parse_knobs([item])
    assert message in str(e.value)


def test_organism_cli_rejects_a_bad_knob_with_exit_2(tmp_path, capsys):
    assert main(["organism", "--out", str(tmp_path / "o"), "--knob", "count_letters.colour=red"]) == 2
    err = capsys.readouterr().err
    assert "lengthrl organism: error: --knob count_letters.colour" in err and "count_letters.max_len" in err
    assert not (tmp_path / "o").exists()


def test_styles_by_level_on_a_hand_made_add_chain_file(tmp_path, capsys):
    recs = [dict(_rec("add_chain:3+5", "<answer>8</answer>", True), level=2),
            dict(_rec("add_chain:3+5+1", "<answer>8</answer>", False), level=3),
            dict(_rec("add_chain:3+5+1", "3+5=8\n8+1=9\n<answer>9</answer>", True), level=3)]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"model": "m", "task": "add_chain", "n_samples": 1, "metrics": {}, "records": recs}))
    s = eval_file_styles(path, by_level=True)
    assert list(s) == ["level 2", "level 3", "all levels"]
    assert s["level 2"]["concise"] == {"n": 1, "share": 1.0, "acc": 1.0, "acc_se": 0.0, "len": 19}
    assert s["level 3"]["concise"]["acc"] == 0.0 and s["level 3"]["steps"]["acc"] == 1.0
    assert s["all levels"]["all"]["n"] == 3 and s["all levels"]["steps"]["n"] == 1
    assert main(["styles", str(path), "--by-level", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[str(path)]["level 3"]["steps"]["n"] == 1
    assert main(["styles", str(path), "--by-level"]) == 0
    assert "level 3" in capsys.readouterr().out
    # records without a level (a task without levels, or an older file): one line that says so
    path.write_text(json.dumps({"model": "m", "task": "count_letters", "n_samples": 1, "metrics": {},
                                "records": RECORDS}))
    assert main(["styles", str(path), "--by-level"]) == 2
    assert "have no 'level'" in capsys.readouterr().err
    bad = dict(recs[0], level="two")
    with pytest.raises(DataError, match="field 'level' must be an integer"):
        style_summary([bad])


def test_a_closing_line_alone_is_verbose_only_where_the_task_allows_it():
    # count_letters' verbose trace has a line per letter before its closer; add_chain's of two terms is the closer
    assert classify_style("check: a at none, total 0 ok\n<answer>0</answer>", "count_letters") == "other"
    assert classify_style("4+9=13, done\n<answer>13</answer>", "add_chain") == "verbose"
