"""Procedural tasks: correct answers (recomputed independently), varied trace lengths, disjoint splits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Task
from lengthrl.tasks.procedural import (
    PROCEDURAL_TASKS,
    STYLES,
    ArithChain,
    CountLetters,
    SortDigits,
    extract_answer,
    make_procedural_task,
)


def _eval_left_to_right(expr: str) -> int:
    toks = re.findall(r"\d+|[+\-*]", expr)
    value = int(toks[0])
    for op, b in zip(toks[1::2], toks[2::2]):
        value = {"+": value + int(b), "-": value - int(b), "*": value * int(b)}[op]
    return value


def test_registry_holds_task_classes():
    assert set(PROCEDURAL_TASKS) == {"arith_chain", "count_letters", "sort_digits", "long_add", "add_chain"}
    for name, cls in PROCEDURAL_TASKS.items():
        assert issubclass(cls, Task) and cls.name == name


def test_arith_chain_answers_are_right():
    task = ArithChain(min_steps=1, max_steps=4)
    for s in task.samples("train", 200, seed=3):
        expr = s.prompt.split(":", 1)[1].strip()
        assert int(s.answer) == _eval_left_to_right(expr)
        assert 0 <= int(s.answer) <= 99


def test_hand_example_and_traces():
    # 7+5*3-2 left to right: ((7+5)*3)-2 = 34
    assert _eval_left_to_right("7+5*3-2") == 34
    s = ArithChain().samples("train", 1, seed=0)[0]
    tr = s.meta["traces"]
    assert tr["concise"] == f"<answer>{s.answer}</answer>"
    assert tr["steps"].endswith(f"<answer>{s.answer}</answer>") and "check" not in tr["steps"]
    assert "check" in tr["verbose"] and tr["verbose"].endswith(f"<answer>{s.answer}</answer>")


def test_count_letters_and_sort_digits_answers():
    for s in CountLetters().samples("train", 200, seed=1):
        letter, word = re.match(r"count (\w) in: (\w+)\n", s.prompt).groups()
        assert s.answer == str(word.count(letter))
    for s in SortDigits().samples("test", 100, seed=1):
        digits = s.prompt.split(":")[1].strip()
        assert s.answer == "".join(sorted(digits))


@pytest.mark.parametrize("name", sorted(PROCEDURAL_TASKS))
def test_trace_lengths_vary_and_all_traces_score_correct(name):
    task = PROCEDURAL_TASKS[name]()
    samples = task.samples("train", 300, seed=0)
    styles = [s.meta["style"] for s in samples]
    assert set(styles) == set(STYLES)  # equal weights: every style appears in 300 samples
    for s in samples:
        tr = s.meta["traces"]
        assert len(tr["concise"]) < len(tr["steps"]) < len(tr["verbose"])
        assert s.solution == tr[s.meta["style"]]
        for text in tr.values():
            sc = task.score(s, text)
            assert sc.correct and sc.reward == 1.0 and sc.format_ok
    lens = [len(s.solution) for s in samples]
    assert max(lens) >= 4 * min(lens)


@pytest.mark.parametrize("name", sorted(PROCEDURAL_TASKS))
def test_splits_disjoint_and_deterministic(name):
    task = PROCEDURAL_TASKS[name]()
    train = task.samples("train", 500, seed=0)
    test = task.samples("test", 200, seed=0)
    assert {s.id for s in train}.isdisjoint({s.prompt for s in test} | {s.id for s in test})
    assert {s.prompt for s in train}.isdisjoint({s.prompt for s in test})
    assert len({s.id for s in train}) == 500  # distinct
    again = task.samples("train", 500, seed=0)
    assert [(s.prompt, s.solution) for s in again] == [(s.prompt, s.solution) for s in train]
    other = task.samples("train", 500, seed=1)
    assert [s.prompt for s in other] != [s.prompt for s in train]


def test_scoring_wrong_missing_and_hash_format():
    task = ArithChain()
    s = task.samples("test", 1, seed=0)[0]
    wrong = str(int(s.answer) + 1)
    assert not task.score(s, f"<answer>{wrong}</answer>").correct
    miss = task.score(s, "I think it is " + s.answer)
    assert not miss.correct and not miss.format_ok and miss.extracted is None
    assert task.score(s, f"work\n#### {s.answer}").correct
    # the last tag counts
    assert task.score(s, f"<answer>{wrong}</answer> no: <answer>{s.answer}</answer>").correct
    assert extract_answer("<answer> 12 </answer>") == "12"


def test_difficulty_knobs_change_problems():
    easy = ArithChain(min_steps=1, max_steps=1).samples("train", 50)
    hard = ArithChain(min_steps=4, max_steps=4).samples("train", 50)
    assert all(s.meta["traces"]["steps"].count("\n") == 1 for s in easy)
    assert all(s.meta["traces"]["steps"].count("\n") == 4 for s in hard)
    long = SortDigits(min_len=6, max_len=6).samples("train", 20)
    assert all(len(s.answer) == 6 for s in long)


def test_style_weights_select_style():
    only_concise = ArithChain(style_weights=(1, 0, 0)).samples("train", 30)
    assert all(s.meta["style"] == "concise" for s in only_concise)


@pytest.mark.parametrize(
    "name,knobs,field",
    [
        ("arith_chain", {"min_steps": 3, "max_steps": 2}, "min_steps"),
        ("arith_chain", {"max_operand": 1}, "max_operand"),
        ("count_letters", {"alphabet": "a"}, "alphabet"),
        ("sort_digits", {"min_len": 1}, "min_len"),
        ("arith_chain", {"style_weights": (0, 0, 0)}, "style_weights"),
        ("arith_chain", {"test_fraction": 1.5}, "test_fraction"),
        ("arith_chain", {"bogus": 1}, "bogus"),
    ],
)
def test_bad_knobs_name_the_field(name, knobs, field):
    with pytest.raises(ConfigError, match=field):
        make_procedural_task(name, **knobs)


def test_unknown_task_and_split():
    with pytest.raises(ConfigError, match="arith_chain"):
        make_procedural_task("nope")
    with pytest.raises(ConfigError, match="split"):
        ArithChain().samples("valid", 3)


def test_small_problem_space_returns_what_exists():
    # one-step sums/differences/products of 2..3: a handful of problems, the test split even fewer
    task = ArithChain(min_steps=1, max_steps=1, max_operand=2, max_value=4)
    tr, te = task.samples("train", 1000), task.samples("test", 1000)
    assert 0 < len(tr) + len(te) < 30
    assert {s.prompt for s in tr}.isdisjoint({s.prompt for s in te})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), name=st.sampled_from(sorted(PROCEDURAL_TASKS)))
def test_property_every_trace_verifies(seed, name):
    task = PROCEDURAL_TASKS[name]()
    for s in task.samples("train", 5, seed=seed):
        assert task.split_of(s.id.split(":", 1)[1]) == "train"
        for text in s.meta["traces"].values():
            assert task.score(s, text).correct
