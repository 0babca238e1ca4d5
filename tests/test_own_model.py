"""A user's own model the way a TRL user expects (issue items: chat templates, the report's length panels, lazy
CLI and `compare`, max_prompt_length, custom reward functions, the Python API, `lengthrl sft`)."""

import json

import numpy as np
import pytest

from lengthrl.eval.metrics import aes, summarize
from lengthrl.eval.records import EvalRecord, EvalResult, save_eval


def _eval_file(path, task, prompts, acc, length, n=4, seed=0):
    rng = np.random.default_rng(seed)
    recs = [EvalRecord(prompt_id=p, sample_idx=j, length=int(rng.integers(length - 5, length + 6)),
                       correct=bool(rng.random() < acc)) for p in prompts for j in range(n)]
    save_eval(EvalResult(model=str(path), task=task, n_samples=n, metrics=summarize(recs, [1]), records=recs), path)
    return path


# ------------------------------------------------------------------ 8. compare: prompt sets and AES intervals

def test_compare_gives_an_aes_interval_around_the_point_value(tmp_path):
    from lengthrl.analysis.compare import compare_runs
    from lengthrl.analysis.runs import load_run

    ids = [f"q{i}" for i in range(40)]
    a = _eval_file(tmp_path / "a.json", "count_letters", ids, 0.5, 60, seed=1)
    b = _eval_file(tmp_path / "b.json", "count_letters", ids, 0.6, 40, seed=2)
    res = compare_runs([load_run(a), load_run(b)])
    t = res["table"]
    lo, hi, point = t["aes_ci95_lo"][1], t["aes_ci95_hi"][1], t["aes_vs_first"][1]
    assert lo < point < hi and hi - lo > 0.05  # 40 prompts x 4 samples: a real spread
    assert t["aes_ci95_lo"][0] is None and res["warnings"] == []


def test_aes_interval_is_paired_on_shared_prompts():
    from lengthrl.analysis.compare import aes_interval

    # the same responses for both: every paired resample gives AES exactly 0
    recs = [EvalRecord(prompt_id=f"q{i}", sample_idx=0, length=10 + i, correct=i % 2 == 0) for i in range(20)]
    assert aes_interval(recs, recs) == (0.0, 0.0)
    # a baseline that is never right: AES is undefined, no interval
    wrong = [EvalRecord(prompt_id=r.prompt_id, sample_idx=0, length=5, correct=False) for r in recs]
    assert aes_interval(recs, wrong) == (None, None)
    assert aes(0.5, 14.5, 0.5, 14.5) == 0.0


def test_compare_warns_on_different_prompt_sets(tmp_path, capsys):
    from lengthrl.analysis.compare import compare_runs, print_comparison
    from lengthrl.analysis.runs import load_run

    a = _eval_file(tmp_path / "a.json", "count_letters", [f"q{i}" for i in range(30)], 0.5, 50)
    b = _eval_file(tmp_path / "b.json", "arith_chain", [f"q{i}" for i in range(10, 40)], 0.5, 50)
    res = compare_runs([load_run(a), load_run(b)])
    assert any("different prompt sets (20 shared, 10 only in b, 10 only in a)" in w for w in res["warnings"])
    assert any("task 'arith_chain'" in w for w in res["warnings"])
    lo, hi = res["table"]["aes_ci95_lo"][1], res["table"]["aes_ci95_hi"][1]
    assert lo is not None and lo < hi  # unpaired bootstrap still gives an interval
    print_comparison(res)
    assert "warning: b and a were evaluated on different prompt sets" in capsys.readouterr().out


# ------------------------------------------------------------------ 2. chat templates and system prompts

Q = "What is 12 plus 7?"
GSM_INSTR = "\n\nSolve step by step; end with a line '#### <answer>'."


def _gsm(tmp_path, n=30, conversational=False, name="gsm.jsonl"):
    p = tmp_path / name
    rows = []
    for i in range(n):
        q = f"What is {i} plus 7?"
        if conversational:
            rows.append({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}],
                         "answer": f"#### {i + 7}"})
        else:
            rows.append({"question": q, "answer": f"{i} + 7 = {i + 7}\n#### {i + 7}"})
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    from qwenlike import qwen_like_model_dir
    from runkit import MICRO

    return str(qwen_like_model_dir(tmp_path_factory.mktemp("qwen") / "m", **{**MICRO, "max_position_embeddings": 512}))


def _tok(model_dir):
    from lengthrl.models import load_tokenizer

    return load_tokenizer(model_dir)


def test_the_instruction_goes_inside_the_user_turn_before_the_generation_prompt(qwen_dir):
    from lengthrl.tasks.base import Sample
    from lengthrl.tasks.chat import prompt_format
    from lengthrl.tasks.templates import apply_template

    tok = _tok(qwen_dir)
    s = apply_template(Sample(id="a", prompt=Q, answer="19"), "gsm8k")
    fmt = prompt_format(tok, "auto", "Be brief.")
    want = (f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{Q}{GSM_INSTR}<|im_end|>\n"
            "<|im_start|>assistant\n")
    assert fmt.text(tok, s) == want
    assert fmt.encode(tok, s) == tok(want, add_special_tokens=False)["input_ids"]
    # without a system prompt the template's own default system turn is used
    assert prompt_format(tok, "auto").text(tok, s).startswith("<|im_start|>system\nYou are a helpful assistant.")
    # 'none': the raw text, as before
    assert prompt_format(tok, "none").encode(tok, s) == tok(s.prompt)["input_ids"]


def test_a_jinja_file_overrides_and_bad_settings_are_one_line_errors(qwen_dir, micro_dir, tmp_path):
    from lengthrl.errors import ConfigError
    from lengthrl.tasks.base import Sample
    from lengthrl.tasks.chat import prompt_format
    from lengthrl.train.validate import build_config

    tok = _tok(qwen_dir)
    jinja = tmp_path / "t.jinja"
    jinja.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                     "{% if add_generation_prompt %}[assistant] {% endif %}")
    s = Sample(id="a", prompt=Q, answer="19")
    assert prompt_format(tok, str(jinja), "S").text(tok, s) == f"[system] S\n[user] {Q}\n[assistant] "
    with pytest.raises(ConfigError, match="not 'auto', 'none' or a Jinja file"):
        prompt_format(tok, str(tmp_path / "missing.jinja"))
    with pytest.raises(ConfigError, match="config key 'chat_template'"):
        build_config(None, [f"chat_template={tmp_path / 'missing.jinja'}"])
    # the organism-like char tokenizer has no template: system_prompt cannot go anywhere
    with pytest.raises(ConfigError, match="system_prompt is set but the tokenizer has no chat template"):
        prompt_format(_tok(micro_dir), "auto", "Be brief.")


def test_conversational_data_keeps_its_turns_and_templates_the_last_user_turn(qwen_dir, tmp_path):
    from lengthrl.tasks import get_task
    from lengthrl.tasks.chat import prompt_format

    task = get_task("data", path=_gsm(tmp_path, conversational=True), answer_rule="hash", template="gsm8k")
    s = task.samples("train")[0]
    assert s.meta["chat"] == [{"role": "system", "content": "Be brief."}] and s.prompt.endswith(GSM_INSTR)
    tok = _tok(qwen_dir)
    text = prompt_format(tok, "auto", "ignored: the data has its own").text(tok, s)
    assert text == (f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{s.prompt}<|im_end|>\n"
                    "<|im_start|>assistant\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}],
                               "answer": "1"}) + "\n")
    from lengthrl.errors import DataError

    with pytest.raises(DataError, match="line 1: field 'prompt': message 1 must be"):
        get_task("data", path=bad)


def _train_cfg(model, data, **kw):
    from lengthrl.train.validate import build_config

    sets = {"model": model, "task": "data", "task_args": {"path": str(data), "prompt_field": "question",
                                                          "answer_rule": "hash", "template": "gsm8k"},
            "steps": 1, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 6, "train_prompts": 4,
            "checkpoint_every": 0, "eval_prompts": 2, "log_every": 0, "seed": 0, **kw}
    return build_config(None, None, sets)


def test_the_trainer_and_eval_prompt_a_chat_model_through_its_template(qwen_dir, tmp_path):
    from lengthrl.tasks.chat import prompt_format
    from lengthrl.train.loop import train

    tr = train(_train_cfg(qwen_dir, _gsm(tmp_path), system_prompt="Be brief."), tmp_path / "run", progress=False)
    tok = _tok(qwen_dir)
    s = tr.sampler.pool[0]
    want = prompt_format(tok, "auto", "Be brief.").encode(tok, s)
    assert tr._encode([s]) == [want] and tok.decode(want).endswith(f"{GSM_INSTR}<|im_end|>\n<|im_start|>assistant\n")
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["records"]  # the final eval ran

    class Capture:  # records the prompt ids `lengthrl eval` gives the policy
        seen: list = []

        def generate(self, prompts, n, params):
            self.seen.extend(prompts)
            return {"response_ids": [[0]] * len(prompts) * n, "response_mask": [[True]] * len(prompts) * n,
                    "lengths": [1] * len(prompts) * n, "truncated": [False] * len(prompts) * n}

    from lengthrl.eval.runner import run_eval

    pol = Capture()
    run_eval(pol, tr.task, samples=[s], tokenizer=tok, chat_template="auto", system_prompt="Be brief.",
             progress=False)
    assert pol.seen == [want]


def test_a_model_without_a_template_trains_exactly_as_before(micro_dir, tmp_path):
    from lengthrl.train.loop import train

    data = _gsm(tmp_path)
    runs = [train(_train_cfg(micro_dir, data, chat_template=ct), tmp_path / ct, progress=False)
            for ct in ("auto", "none")]
    s = runs[0].sampler.pool[0]
    assert runs[0]._encode([s]) == [runs[0].tok(s.prompt)["input_ids"]]  # the prompt text as it is

    def strip(rows):
        return [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in rows]

    assert strip(runs[0].metrics.rows()) == strip(runs[1].metrics.rows())
    evals = [json.loads((tmp_path / ct / "eval.json").read_text())["records"] for ct in ("auto", "none")]
    assert evals[0] == evals[1]


# ------------------------------------------------------------------ 9. max_prompt_length

def test_long_prompts_error_truncate_or_filter_with_a_count(micro_dir, tmp_path, caplog):
    from lengthrl.errors import ConfigError
    from lengthrl.train.loop import Trainer

    p = tmp_path / "mixed.jsonl"
    rows = [{"question": ("long " * 30 if i % 3 == 0 else "") + f"{i}+7?", "answer": f"#### {i + 7}"}
            for i in range(30)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kw = {"max_prompt_length": 100, "eval_prompts": 0, "train_prompts": 30}
    with pytest.raises(ConfigError, match="long_prompts = 'truncate'"):
        Trainer(_train_cfg(micro_dir, p, **kw), tmp_path / "e", progress=False)
    tr = Trainer(_train_cfg(micro_dir, p, long_prompts="truncate", **kw), tmp_path / "t", progress=False)
    long = [s for s in tr.sampler.pool if s.prompt.startswith("long")]
    ids = tr._encode(long)
    assert long and all(len(i) == 100 for i in ids)
    assert ids[0] == tr.tok(long[0].prompt)["input_ids"][-100:]  # the last 100 tokens, as TRL keeps them
    caplog.clear()
    with caplog.at_level("WARNING", logger="lengthrl.train"):
        tr = Trainer(_train_cfg(micro_dir, p, long_prompts="filter", **kw), tmp_path / "f", progress=False)
    n_long = sum(1 for s in get_pool(p) if s.prompt.startswith("long"))
    assert len(tr.sampler.pool) == len(get_pool(p)) - n_long and tr.long_prompts_found == n_long
    assert f"{n_long} of {len(get_pool(p))} training prompts are longer than 100 tokens: dropped" in caplog.text


def get_pool(path):
    from lengthrl.tasks import get_task

    return get_task("data", path=path, prompt_field="question", answer_rule="hash", template="gsm8k").samples("train")


def test_the_trl_adapter_prompt_renders_as_lengthrl_does(qwen_dir, tmp_path):
    pytest.importorskip("trl")
    from trl.data_utils import maybe_apply_chat_template

    from lengthrl.tasks import get_task
    from lengthrl.tasks.chat import PromptFormat, prompt_format

    tok = _tok(qwen_dir)
    for conv in (False, True):
        task = get_task("data", path=_gsm(tmp_path, conversational=conv, name=f"g{conv}.jsonl"),
                        prompt_field="prompt" if conv else "question", answer_rule="hash", template="gsm8k")
        s = task.samples("train")[0]
        row = {"prompt": PromptFormat(system_prompt="Be brief.").messages(s)}
        assert maybe_apply_chat_template(row, tok)["prompt"] == prompt_format(tok, "auto", "Be brief.").text(tok, s)


# ------------------------------------------------------------------ 9. custom Python reward functions

REWARDS_PY = '''
SEEN = []

def brevity(prompts, completions, completion_ids, **columns):
    SEEN.append({"prompts": prompts, "completions": completions, "completion_ids": completion_ids, **columns})
    return [-len(ids) / 10 for ids in completion_ids]

def short(prompts, completions, completion_ids, **columns):
    return [1.0] * (len(completions) - 1)

NOT_A_FUNCTION = 3
'''


@pytest.fixture()
def rewards_module(tmp_path, monkeypatch):
    import sys

    name = f"myrewards_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(REWARDS_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_python_reward_function_is_called_with_trls_signature(micro_dir, tmp_path, rewards_module):
    import importlib

    from lengthrl.train.loop import train

    cfg = _train_cfg(micro_dir, _gsm(tmp_path), eval_prompts=0,
                     reward_funcs=[{"func": f"{rewards_module}:brevity", "weight": 0.5}])
    tr = train(cfg, tmp_path / "run", progress=False)
    seen = importlib.import_module(rewards_module).SEEN
    assert len(seen) == 1
    call = seen[0]
    n = cfg.prompts_per_step * cfg.group_size
    assert len(call["prompts"]) == len(call["completions"]) == len(call["completion_ids"]) == n
    assert call["prompts"][0] == call["prompts"][1] and call["prompts"][0].endswith(GSM_INSTR)  # groups contiguous
    assert all("#### " in a for a in call["answer"])  # the data file's own answer column, as TRL passes it
    assert "question" not in call  # the prompt column is `prompts`
    m = tr.metrics.rows()[0]
    want = sum(-len(i) / 10 for i in call["completion_ids"]) / n
    assert m["reward/brevity"] == pytest.approx(want, abs=1e-6)
    assert m["len/mean"] == pytest.approx(sum(len(i) for i in call["completion_ids"]) / n)  # EOS included
    assert m["reward/mean"] == pytest.approx(m["reward/correct"] + 0.5 * want, abs=1e-6)


def test_bad_reward_functions_are_one_line_errors(micro_dir, tmp_path, rewards_module, capsys):
    from lengthrl.errors import ConfigError
    from lengthrl.rewards.python import call_rewards, load_rewards
    from lengthrl.train.validate import build_config

    for entry, msg in (("nosuchmodule_xyz:f", "cannot import module 'nosuchmodule_xyz'"),
                       (f"{rewards_module}:nope", f"module '{rewards_module}' has no 'nope'"),
                       (f"{rewards_module}:NOT_A_FUNCTION", "is a int, not a function"),
                       ("no_colon", "is not 'package.module:function'")):
        with pytest.raises(ConfigError, match=msg):
            build_config(None, [f"reward_funcs={json.dumps([entry])}"])
    from lengthrl.tasks.base import Sample

    (short,) = load_rewards([f"{rewards_module}:short"])
    with pytest.raises(ConfigError, match=r"returned 3 values for 4 completions; it must return a list with one"):
        call_rewards([short], [Sample("a", "p", "1"), Sample("b", "q", "2")], ["x"] * 4, [[1]] * 4, 2)
    # through the command line: exit 2 and one line, not a traceback
    rc = main(["train", "--set", f"model={json.dumps(micro_dir)}", "--set", f"reward_funcs=[\"{rewards_module}:short\"]",
               "--set", "steps=1", "--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "max_new_tokens=4",
               "--set", "train_prompts=4", "--set", "eval_prompts=0", "--out", str(tmp_path / "cli"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "returned 3 values for 4 completions" in err and "Traceback" not in err


def main(argv):
    from lengthrl.cli import main as cli_main

    return cli_main(argv)


# ------------------------------------------------------------------ 9. the README's Python, as written

def test_the_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    import re
    import runpy
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2 and any("Trainer(cfg" in b for b in blocks)
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        (tmp_path / f"block{i}.py").write_text(code)
        runpy.run_path(str(tmp_path / f"block{i}.py"), run_name="__main__")
    rows = [json.loads(line) for line in (tmp_path / "runs" / "api" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and (tmp_path / "runs" / "api" / "final").is_dir()


# ------------------------------------------------------------------ 9. lengthrl sft on a user model

def test_sft_warms_up_a_user_model_on_a_data_file(qwen_dir, tmp_path, capsys):
    from lengthrl.models import load_policy
    from lengthrl.models.sft_cli import sft_examples
    from lengthrl.tasks import get_task
    from lengthrl.tasks.chat import prompt_format

    data = _gsm(tmp_path, 40)
    targs = ["--task-arg", "prompt_field=question", "--task-arg", "answer_rule=hash", "--task-arg", "template=gsm8k"]
    out = tmp_path / "sft"
    rc = main(["sft", "--model", qwen_dir, "--data", str(data), *targs, "--steps", "40", "--batch-size", "8",
               "--lr", "3e-3", "--warmup-steps", "2", "--system-prompt", "Be brief.", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    info = json.loads((out / "sft.json").read_text())
    assert info["chat_template"] and info["loss_last"] < 0.7 * info["loss_first"]
    model, tok = load_policy(out)  # loadable, with its chat template kept
    assert tok.chat_template and model.config.model_type == "qwen2"
    # the targets: the trainer's prompt encoding, then the worked solution and EOS; loss only on those
    task = get_task("data", path=data, prompt_field="question", answer_rule="hash", template="gsm8k")
    s = task.samples("train")[0]
    fmt = prompt_format(tok, "auto", "Be brief.")
    (ex,) = sft_examples(tok, [s], fmt)
    assert ex.ids[:ex.prompt_len] == fmt.encode(tok, s) and ex.ids[-1] == tok.eos_token_id
    assert tok.decode(ex.ids[ex.prompt_len:-1]) == s.solution and s.solution.endswith(f"#### {s.answer}")
    # a file without worked solutions says how to map one
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"q": f"{i}+1", "a": i + 1}) + "\n" for i in range(10)))
    rc = main(["sft", "--model", qwen_dir, "--data", str(plain), "--task-arg", "prompt_field=q",
               "--task-arg", "answer_field=a", "--out", str(tmp_path / "x")])
    assert rc == 2 and "--task-arg solution_field=COLUMN" in capsys.readouterr().err


# ------------------------------------------------------------------ 6. the report's length panels: the logged metrics

def test_length_panels_plot_the_logged_metrics_with_markers(tmp_path):
    from lengthrl.analysis.plots import dynamics_figure
    from lengthrl.analysis.report import dynamics_lines
    from lengthrl.analysis.runs import load_run

    run_dir = tmp_path / "one"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"group_size": 4}))
    # one step: metrics.jsonl saw all 8 responses; samples.jsonl keeps responses 0, 2, 4, 6 (one per pair),
    # whose within-group spread is 0 and whose advantages are all equal
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "acc": 0.5, "len/mean": 20.0,
                                                       "len/group_std_mean": 9.09, "adv_len_corr": 0.41,
                                                       "entropy": 1.2}) + "\n")
    (run_dir / "samples.jsonl").write_text("".join(
        json.dumps({"step": 1, "prompt_id": f"q{i // 2}", "prompt": "p", "response": "r", "length": 20,
                    "correct": True, "reward": 1.0, "advantage": 0.0}) + "\n" for i in range(4)))
    run = load_run(run_dir)
    lines = "\n".join(dynamics_lines(run))
    assert "within-group length std (len/group_std_mean): +9.09 at step 1" in lines
    assert "length/advantage correlation (adv_len_corr): +0.41 at step 1" in lines
    fig = dynamics_figure([run], ["one"])
    for ax, want in zip(fig.axes, (9.09, 0.41, 1.2)):
        line = ax.lines[0]  # (the correlation panel also has its zero line)
        assert list(line.get_ydata()) == [want] and line.get_marker() == "o"  # one point, drawn as a marker


def test_tasks_show_and_budget_curves_prompt_through_the_template(qwen_dir, tmp_path, capsys):
    from lengthrl.eval.budget import budget_curve
    from lengthrl.rollout import SamplingParams
    from lengthrl.tasks import get_task
    from lengthrl.tasks.chat import prompt_format

    data = _gsm(tmp_path)
    assert main(["tasks", "--show", f"data:{data}", "--arg", "prompt_field=question", "--arg", "answer_rule=hash",
                 "--arg", "template=gsm8k", "--n", "1", "--model", qwen_dir, "--system-prompt", "Be brief."]) == 0
    out = capsys.readouterr().out
    assert "<|im_start|>system\nBe brief.<|im_end|>" in out and "'#### <answer>'.<|im_end|>\n<|im_start|>assistant" in out

    tok = _tok(qwen_dir)
    task = get_task("data", path=data, prompt_field="question", answer_rule="hash", template="gsm8k")
    s = task.samples("test")[0]

    class Capture:
        seen: list = []

        def generate(self, prompts, n, params):
            self.seen.extend(prompts)
            return {"response_ids": [[5, 6]] * len(prompts) * n, "lengths": [2] * len(prompts) * n,
                    "response_mask": [[True, True]] * len(prompts) * n, "truncated": [False] * len(prompts) * n}

    pol = Capture()
    budget_curve(pol, task, [4], SamplingParams(max_new_tokens=4), samples=[s], tokenizer=tok,
                 chat_template="auto", system_prompt="Be brief.")
    assert pol.seen[0] == prompt_format(tok, "auto", "Be brief.").encode(tok, s)


def test_python_reward_values_are_gathered_in_rank_order():
    import torch

    from lengthrl.tasks.base import Sample
    from lengthrl.train.batch import StepBatch

    class TwoRanks:  # rank 0's view of a 2-process gather: its own part, then rank 1's
        enabled = True

        def __init__(self, other):
            self.other = other

        def gather_objects(self, mine):
            return [mine, self.other]

    samples = [Sample(id=f"p{i}", prompt="q", answer="1") for i in range(4)]
    rank1 = (["c", "d", "e", "f"], torch.tensor([3, 4, 5, 6]), torch.zeros(4, dtype=torch.bool), [None] * 4,
             [{"index": 6}], {"brevity": [0.3, 0.4, 0.5, 0.6]})
    sb = StepBatch(samples, 2, 0, 2, dist=TwoRanks(rank1))
    got = sb.gather(["a", "b", "x", "y"], torch.tensor([1, 2, 1, 2]), torch.zeros(4, dtype=torch.bool), [None] * 4,
                    [], {"brevity": [0.1, 0.2, 0.1, 0.2]})
    assert got.extra == {"brevity": [0.1, 0.2, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
    assert got.texts[:5] == ["a", "b", "x", "y", "c"] and len(got.lengths) == 8
