"""A user's own data, the way a TRL user brings it: a held-out split by default (checked before step 1),
truncated responses wrong, the response rule and format check following the task's format, one value parser
for --set and --arg, and length rewards capped at max_new_tokens unless told otherwise."""

import json
import logging

import pytest
import torch

from lengthrl.cli import main
from lengthrl.errors import ConfigError
from lengthrl.parsing import parse_value
from lengthrl.rewards import CompositeReward
from lengthrl.tasks import get_task
from lengthrl.tasks.base import Sample, Score
from lengthrl.tasks.cli import parse_task_args
from lengthrl.tasks.math_task import MathTask
from lengthrl.train.validate import build_config, reward_terms, warn_reward_lengths
from lengthrl.train.scoring import reward_batch


def gsm_file(tmp_path, n=40, name="gsm.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps({"question": f"What is {i}+1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}"}) + "\n"
                         for i in range(n)))
    return p


# ------------------------------------------------------------------ 1. a test split, validated before step 1

def test_a_data_task_holds_out_a_tenth_by_default(tmp_path):
    t = get_task("data", path=gsm_file(tmp_path, 200), prompt_field="question", answer_rule="hash")
    train, test = t.samples("train"), t.samples("test")
    assert len(train) + len(test) == 200 and 5 <= len(test) <= 40
    assert not {s.id for s in train} & {s.id for s in test}
    none = get_task("data", path=gsm_file(tmp_path, 20), prompt_field="question", answer_rule="hash",
                    test_fraction=0)
    assert len(none.samples("train")) == 20 and none.samples("test") == []


def _sets(p, *extra):
    return ["--set", f"model={json.dumps(p['model'])}", "--set", "task=data",
            "--set", f"task_args.path={json.dumps(str(p['data']))}", "--set", "task_args.prompt_field=question",
            "--set", "task_args.answer_rule=hash", "--set", "steps=1", "--set", "prompts_per_step=2",
            "--set", "group_size=2", "--set", "max_new_tokens=6", "--set", "train_prompts=4",
            "--set", "checkpoint_every=0", "--set", "eval_prompts=3", *extra]


def test_no_test_split_fails_before_step_one_naming_the_fixes(micro_dir, tmp_path, capsys):
    p = {"model": micro_dir, "data": gsm_file(tmp_path)}
    out = tmp_path / "run"
    rc = main(["train", *_sets(p, "--set", "task_args.test_fraction=0"), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    for fix in ("task_args.test_fraction=0.1", "task_args.test_path=", "eval_prompts=0"):
        assert fix in err
    assert not (out / "metrics.jsonl").exists()  # no step was run


def test_the_readme_own_data_recipe_runs_to_the_end_on_a_file_without_a_test_split(micro_dir, tmp_path):
    p = {"model": micro_dir, "data": gsm_file(tmp_path)}
    out = tmp_path / "run"
    assert main(["train", *_sets(p), "--out", str(out), "--quiet"]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert len({r["prompt_id"] for r in ev["records"]}) == 3  # eval_prompts held-out prompts, evaluated
    held_out = get_task("data", path=p["data"], prompt_field="question", answer_rule="hash").samples("test")
    assert {r["prompt_id"] for r in ev["records"]} <= {s.id for s in held_out}


def test_eval_data_evaluates_the_whole_file(tmp_path):
    from lengthrl.eval.cli import resolve_task

    t = resolve_task(None, str(gsm_file(tmp_path, 30)), {"prompt_field": "question", "answer_rule": "hash"})
    assert len(t.samples("test")) == 30


def test_tasks_show_says_how_to_get_a_test_split(tmp_path, capsys):
    f = gsm_file(tmp_path, 5)
    assert main(["tasks", "--show", f"data:{f}", "--arg", "prompt_field=question", "--arg", "answer_rule=hash",
                 "--arg", "test_fraction=0"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "test: showing 0" in out and "test_fraction=0.1" in out and "test_path=" in out


# ------------------------------------------------------------------ 3. truncation and the response rule

def test_a_truncated_response_is_never_correct_by_default():
    samples = [Sample(id="a", prompt="q", answer="5")]
    scores = [Score(correct=True, reward=1.0, format_ok=True)] * 2
    reward = CompositeReward.from_config([{"name": "correct"}])
    lengths, trunc = torch.tensor([4, 8]), torch.tensor([False, True])
    s = reward_batch(reward, samples, scores, [], lengths, 2, trunc)
    assert s.correct.tolist() == [True, False] and s.rewards.tolist() == [1.0, 0.0]
    kept = reward_batch(reward, samples, scores, [], lengths, 2, trunc, truncated_correct=True)
    assert kept.correct.tolist() == [True, True]


def test_the_final_evaluation_counts_truncated_responses_wrong(tmp_path):
    from lengthrl.eval import run_eval

    class Tok:
        def __call__(self, text):
            return {"input_ids": [1, 2]}

    class Batch:
        def __init__(self, n):
            self.response_ids = torch.ones(n, 3, dtype=torch.long)
            self.response_mask = torch.ones(n, 3, dtype=torch.bool)
            self.lengths = torch.tensor([3] * n)
            self.truncated = torch.tensor([True, False] * (n // 2))

        def texts(self, tok):
            return ["#### 5"] * len(self.lengths)

    class Policy:
        tokenizer = Tok()

        def generate(self, prompts, n, params):
            return Batch(len(prompts) * n)

    task = MathTask([], [Sample(id="a", prompt="q", answer="5")], response_rule="hash")
    r = run_eval(Policy(), task, n_samples=2, ks=(1,), progress=False)
    assert [x.correct for x in r.records] == [False, True]


def test_the_response_rule_follows_the_task_format(tmp_path):
    f = gsm_file(tmp_path, 4)
    t = get_task("data", path=f, prompt_field="question", answer_rule="hash", test_fraction=0)
    s = next(x for x in t.samples("train") if x.answer == "3")
    assert not t.score(s, "1 2 3").correct  # a bare number is no '#### n' answer
    assert t.score(s, "2+1=3\n#### 3").correct
    b = get_task("data", path=f, prompt_field="question", answer_rule="hash", template="boxed", test_fraction=0)
    s = next(x for x in b.samples("train") if x.answer == "3")
    assert b.score(s, "so \\boxed{3}").correct and not b.score(s, "#### 3 or 3").correct


# ------------------------------------------------------------------ 4. an honest format check, one parser

def test_the_format_check_pays_no_bare_digit(tmp_path):
    m = MathTask([Sample(id="a", prompt="q", answer="7")])
    s = m.splits["train"][0]
    assert not m.score(s, "x 7 y").format_ok and m.score(s, "x 7 y").correct
    assert m.score(s, "so #### 7").format_ok and m.score(s, "\\boxed{7}").format_ok
    f = tmp_path / "plain.jsonl"
    f.write_text(json.dumps({"question": "What is 2+1?", "answer": "3"}) + "\n")  # answer_rule raw
    g = get_task("data", path=f, prompt_field="question", template="gsm8k", test_fraction=0)
    s = g.samples("train")[0]
    assert not g.score(s, f"the answer is {s.answer}").format_ok
    assert g.score(s, f"ok\n#### {s.answer}").format_ok


@pytest.mark.parametrize("text,value", [
    ("3", 3), ("[512, 1024]", [512, 1024]), ("true", True), ("{format_template = \"hash\"}", {"format_template": "hash"}),
    ('{"format_template": "hash"}', {"format_template": "hash"}), ('[{"name": "correct", "weight": 1}]',
                                                                    [{"name": "correct", "weight": 1}]),
    ("hello world", "hello world"),
])
def test_set_and_arg_share_one_parser(text, value):
    assert parse_value(text) == value
    assert parse_task_args([f"k={text}"]) == {"k": value}


def test_set_takes_json_for_dict_and_list_keys():
    cfg = build_config(None, ['task_args={"path": "x.jsonl", "scoring": {"format_template": "hash"}}',
                              'reward=[{"name": "correct"}, {"name": "format", "weight": 0.5}]'])
    assert cfg.task_args["scoring"] == {"format_template": "hash"}
    assert [t["name"] for t in cfg.reward] == ["correct", "format"]
    cfg = build_config(None, ["task_args.scoring.format_template=hash"])
    assert cfg.task_args == {"scoring": {"format_template": "hash"}}


# ------------------------------------------------------------------ 5. length rewards follow max_new_tokens

def test_length_rewards_cap_at_max_new_tokens_by_default(caplog):
    cfg = build_config("configs/luspo.toml", ["max_new_tokens=64"])
    over = next(t for t in reward_terms(cfg) if t["name"] == "dapo_overlong")
    assert over["max_len"] == 64
    r = CompositeReward.from_config(reward_terms(cfg))
    total, terms = r(torch.tensor([64, 10]), torch.tensor([1.0, 1.0]), 2, format_ok=torch.tensor([True, True]))
    assert terms[next(k for k in terms if "overlong" in k)][0] < 0  # a response at the cap is penalised


def test_a_differing_max_len_warns_and_reward_n_key_overrides_a_term(caplog):
    with caplog.at_level(logging.WARNING, logger="lengthrl.train"):
        cfg = build_config("configs/luspo.toml", ["max_new_tokens=64", "reward.2.max_len=128"])
    assert "never fire" in caplog.text and "reward.2.max_len" in caplog.text
    assert cfg.reward[2]["max_len"] == 128 and warn_reward_lengths(cfg)
    with pytest.raises(ConfigError, match="no reward term 7"):
        build_config("configs/luspo.toml", ["reward.7.max_len=3"])


# ------------------------------------------------------------------ 8. the CLI's examples and defaults

def test_every_help_example_names_a_real_task():
    import re

    from lengthrl.cli import build_parser
    from lengthrl.commands import COMMANDS
    from lengthrl.tasks import TASKS

    build_parser()
    named = [(m[0] or m[1]).split(":")[0] for c in COMMANDS.values() for ex in c.examples
             for m in re.findall(r"--task[ =]([\w:]+)|task=([\w:]+)", ex)]
    assert named and all(t in TASKS for t in named)


def test_eval_writes_next_to_the_user_not_into_the_model(tmp_path):
    from lengthrl.eval.cli import default_out

    out = default_out(str(tmp_path / "runs" / "luspo" / "final"))
    assert out == __import__("pathlib").Path("eval-final.json") and not out.is_absolute()


# ------------------------------------------------------------------ 7. a step without signal says so

def test_a_step_without_signal_says_why_instead_of_nan():
    from lengthrl.train.loop import step_info

    m = {"acc": 0.0, "len/mean": 5.0, "reward/mean": 0.0, "no_signal": 1}
    assert step_info(m, 16).endswith("no update: all 16 groups had equal rewards") and "nan" not in step_info(m, 16)
    assert step_info({**m, "entropy": 1.25}, 16).endswith("ent 1.25")


def test_resume_with_a_changed_config_names_the_keys(micro_dir, tmp_path, caplog):
    from lengthrl.train.config import changed_keys
    from lengthrl.train.loop import train

    assert changed_keys({"lr": 1e-4, "steps": 2, "model_dir": "x"}, {"lr": 1e-4, "steps": 3, "model_dir": "y"}) \
        == ["steps: 2 -> 3"]
    base = [f"model={json.dumps(micro_dir)}", "prompts_per_step=2", "group_size=2", "max_new_tokens=4",
            "train_prompts=4", "eval_prompts=0", "steps=1", "checkpoint_every=1"]
    train(build_config(None, base), tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="lengthrl.train"):
        train(build_config(None, [*base, "steps=2", "lr=1e-3"]), tmp_path, resume=True, progress=False)
    assert "changed config" in caplog.text and "steps: 1 -> 2" in caplog.text and "lr: 0.0002 -> 0.001" in caplog.text
