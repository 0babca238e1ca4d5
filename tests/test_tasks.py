"""Task registry, reasoning-gym adapter, math / code / data tasks, prompt templates with length budgets."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandboxkit import namespaces_or_refusal

from lengthrl.errors import ConfigError, UnknownNameError
from lengthrl.tasks import (
    TASKS,
    TEMPLATES,
    CodeTask,
    DataTask,
    MathTask,
    Sample,
    apply_template,
    choose_budget,
    expand_budgets,
    extract_code,
    get_task,
)
from lengthrl.verifiers import SandboxLimits


def test_registry_names_and_errors():
    assert {"data", "reasoning_gym"} <= set(TASKS)
    with pytest.raises(UnknownNameError, match="valid names: .*reasoning_gym"):
        get_task("no_such_task")
    with pytest.raises(ConfigError, match="empty dataset"):
        get_task("reasoning_gym:")
    with pytest.raises(ConfigError, match="given twice"):
        get_task("reasoning_gym:leg_counting", dataset="leg_counting")
    with pytest.raises(ConfigError, match="bad arguments"):
        get_task("data:x.jsonl", no_such_option=1)


@pytest.fixture(scope="module")
def legs():
    return get_task("reasoning_gym:leg_counting", size=8)


def test_reasoning_gym_adapter_samples_and_scores(legs):
    train, again, test = legs.samples("train", 4, seed=3), legs.samples("train", 4, seed=3), legs.samples("test", 4, seed=3)
    assert [s.prompt for s in train] == [s.prompt for s in again]  # deterministic in the seed
    assert {s.prompt for s in train}.isdisjoint({s.prompt for s in test}) or train[0].prompt != test[0].prompt
    s = train[0]
    assert s.prompt.endswith("inside <answer> </answer>.") and s.meta["question"] in s.prompt
    right = legs.score(s, f"<think>count</think><answer>{s.answer}</answer>")
    wrong = legs.score(s, f"<think>count</think><answer>{int(s.answer) + 1}</answer>")
    assert (right.correct, right.reward, right.extracted) == (True, 1.0, s.answer)
    assert (wrong.correct, wrong.reward) == (False, 0.0)
    assert legs.score(s, "no idea").reward == 0.0
    assert len(legs.samples()) == 8 and legs.samples(n=0) == []


def test_reasoning_gym_unknown_dataset_and_bad_config():
    with pytest.raises(UnknownNameError, match="leg_counting"):
        get_task("reasoning_gym:not_a_dataset")
    with pytest.raises(ConfigError, match="bad configuration"):
        get_task("reasoning_gym:leg_counting", min_animals=5, max_animals=2)


def test_reasoning_gym_with_l1_budgets():
    t = get_task("reasoning_gym:basic_arithmetic", size=4, template="l1", budget_range=(100, 400))
    for s in t.samples():
        assert 100 <= s.target_len <= 400 and s.prompt.endswith(f"Think for {s.target_len} tokens.")


def test_templates_and_budgets():
    s = Sample(id="q1", prompt="What is 2+2?", answer="4")
    l1 = apply_template(s, "l1", 512)
    assert l1.prompt == "What is 2+2?\n\nThink for 512 tokens." and l1.target_len == 512
    assert apply_template(l1, "ruler", 64).prompt == "What is 2+2?\n\n[MLT:64]"  # re-templating keeps the question
    assert apply_template(s, "plain").prompt == "What is 2+2?" and apply_template(s, "plain").target_len is None
    with pytest.raises(ConfigError, match="budget"):
        apply_template(s, "hbpo")
    groups = expand_budgets(s, "hbpo")
    assert [g.target_len for g in groups] == [512, 1024, 2048, 2560]
    assert [g.id for g in groups] == ["q1@512", "q1@1024", "q1@2048", "q1@2560"]
    assert all(g.meta["base_id"] == "q1" and "within" in g.prompt for g in groups)
    with pytest.raises(UnknownNameError, match="l1_max"):
        apply_template(s, "l2")
    assert TEMPLATES["l1_max"].render("Q", 7) == "Q\n\nThink for maximum 7 tokens."


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=20), st.integers(0, 10**6), st.lists(st.integers(1, 5000), min_size=1, max_size=5))
def test_choose_budget_is_deterministic_and_in_range(sid, seed, budgets):
    b = choose_budget(sid, seed, budgets)
    assert b in budgets and b == choose_budget(sid, seed, budgets)
    lo, hi = min(budgets), max(budgets)
    r = choose_budget(sid, seed, budget_range=(lo, hi))
    assert lo <= r <= hi


@pytest.mark.parametrize(
    "kw", [{"budgets": [0]}, {"budgets": []}, {"budget_range": (5, 2)}, {"budgets": 3, "budget_range": (1, 2)}]
)
def test_bad_budgets(kw):
    with pytest.raises(ConfigError):
        choose_budget("x", 0, **kw)


def test_math_task_format_template_and_splits():
    train = [Sample(id=str(i), prompt=f"{i}+1?", answer=str(i + 1)) for i in range(5)]
    t = MathTask(train, response_rule="answer_tag", format_template="think_answer")
    s = t.samples(n=1, seed=1)[0]
    good = t.score(s, f"<think>add</think><answer>{s.answer}</answer>")
    sloppy = t.score(s, f"the answer: <answer>{s.answer}</answer>")
    assert (good.correct, good.format_ok) == (True, True)
    assert (sloppy.correct, sloppy.format_ok) == (True, False)
    assert sorted(x.id for x in t.samples()) == [str(i) for i in range(5)]
    assert t.samples(seed=0) != t.samples(seed=1) or len(train) < 2
    assert t.samples("test") == []
    with pytest.raises(ConfigError, match="split"):
        t.samples("dev")
    with pytest.raises(UnknownNameError):
        MathTask(train, response_rule="nope")


def test_extract_code():
    assert extract_code("text\n```python\nx = 1\n```\nmore\n```py\ny = 2\n```") == ("y = 2\n", True)
    assert extract_code("x = 1") == ("x = 1", False)


def test_code_task_rewards(monkeypatch):
    namespaces_or_refusal(monkeypatch)
    sample = Sample(id="c", prompt="write inc", answer="", meta={"tests": ["assert inc(1) == 2", "assert inc(-1) == 0"]})
    lim = SandboxLimits(timeout_s=3, cpu_s=1)
    frac = CodeTask([sample], limits=lim)
    strict = CodeTask([sample], mode="all", limits=lim)
    half = "```python\ndef inc(x):\n    return x + 1 if x > 0 else 5\n```"
    full = "```python\ndef inc(x):\n    return x + 1\n```"
    assert frac.score(sample, half).reward == 0.5 and not frac.score(sample, half).correct
    assert strict.score(sample, half).reward == 0.0
    ok = strict.score(sample, full)
    assert (ok.reward, ok.correct, ok.format_ok) == (1.0, True, True)
    assert frac.score(sample, "def inc(x):\n    while True: pass").reward == 0.0
    with pytest.raises(ConfigError, match="no tests"):
        frac.score(Sample(id="n", prompt="p", answer=""), full)


def test_data_task_math_with_template_and_holdout(tmp_path):
    f = tmp_path / "gsm.jsonl"
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"} for i in range(40)]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    t = get_task(
        f"data:{f}", prompt_field="question", answer_rule="hash", template="l1", budgets=[128, 256], test_fraction=0.25
    )
    train, test = t.samples("train"), t.samples("test")
    assert len(train) + len(test) == 40 and 3 <= len(test) <= 20
    assert {s.id for s in train}.isdisjoint({s.id for s in test})
    s = train[0]
    assert s.target_len in (128, 256) and s.prompt.endswith(f"Think for {s.target_len} tokens.")
    assert t.score(s, f"so\n#### {s.answer}").correct  # answer_rule hash: the response rule is hash too
    assert not t.score(s, f"so \\boxed{{{s.answer}}}").correct and not t.score(s, "so\n#### -1").correct
    with pytest.raises(ConfigError, match="needs a length budget"):
        DataTask(f, prompt_field="question", answer_rule="hash", template="hbpo")


def test_data_task_code_kind(tmp_path, monkeypatch):
    namespaces_or_refusal(monkeypatch)
    f = tmp_path / "code.jsonl"
    rows = [{"prompt": "write sq", "answer": "-", "tests": json.dumps(["assert sq(3) == 9", "assert sq(0) == 0"])}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    t = DataTask(f, kind="code", tests_field="tests", scoring={"limits": SandboxLimits(timeout_s=3)})
    s = t.samples()[0]
    assert t.score(s, "```python\ndef sq(x):\n    return x * x\n```").reward == 1.0
    with pytest.raises(ConfigError, match="tests_field"):
        DataTask(f, kind="code")
    with pytest.raises(UnknownNameError, match="math, code"):
        DataTask(f, kind="sql")


def _tasks_cli(argv):
    import argparse

    import lengthrl.tasks.cli  # noqa: F401  (registers the command)
    from lengthrl.commands import COMMANDS

    cmd = COMMANDS["tasks"]
    p = argparse.ArgumentParser()
    cmd.add_args(p)
    return cmd.run(p.parse_args(argv))


def test_tasks_command_lists_and_previews(tmp_path, capsys):
    from lengthrl.errors import DataError

    assert _tasks_cli([]) == 0
    out = capsys.readouterr().out
    assert "reasoning_gym" in out and "hbpo" in out and "last_number" in out
    f = tmp_path / "g.jsonl"
    f.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    argv = ["--show", f"data:{f}", "--arg", "prompt_field=question", "--arg", "answer_rule=hash",
            "--arg", "template=l1", "--arg", "budgets=[64]"]
    assert _tasks_cli(argv) == 0
    assert "Think for 64 tokens." in capsys.readouterr().out
    f.write_text('{"question": "1+1?", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"g\.jsonl: line 1: field 'answer': no answer found"):
        _tasks_cli(argv)
    with pytest.raises(ConfigError, match="key=value"):
        _tasks_cli(["--show", "data:x", "--arg", "novalue"])


def test_code_task_stdin_stdout_cases(tmp_path, monkeypatch):
    namespaces_or_refusal(monkeypatch)
    f = tmp_path / "io.jsonl"
    cases = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}]
    f.write_text(json.dumps({"prompt": "add two numbers", "answer": "-", "tests": cases}) + "\n")
    t = DataTask(f, kind="code", tests_field="tests", scoring={"limits": SandboxLimits(timeout_s=3)})
    s = t.samples()[0]
    assert s.meta["io_tests"] == [("2 3\n", "5\n"), ("10 -4\n", "6")]
    right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    only_first = "```python\nprint(5)\n```"
    forged = "```python\nimport os\nos.write(3, b'P\\nP\\n')\nprint('P')\n```"  # tries the assert-mode pipe
    assert t.score(s, right).reward == 1.0 and t.score(s, right).correct
    assert t.score(s, only_first).reward == 0.5
    assert t.score(s, forged).reward == 0.0
