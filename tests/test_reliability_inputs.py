"""Bad input is rejected early and cleanly: `lengthrl train` exits with status 2 and one message naming the
file / line / field / config key and the fix, never a traceback. Also the accepted edge: a tokenizer without
a pad token (EOS is reused, with a warning)."""

import json
import re
import shutil

import pytest

from lengthrl.cli import main
from lengthrl.models import load_policy


def data_file(name, text=None, raw=None):
    def make(tmp):
        p = tmp / name
        p.write_bytes(raw) if raw is not None else p.write_text(text)
        return ["task=data", f"task_args.path={json.dumps(str(p))}"]
    return make


def model_dir(kind):
    def make(tmp, micro):
        d = tmp / "model"
        if kind == "missing":
            return [f"model={json.dumps(str(d))}"]
        if kind == "file":
            d.write_text("x")
            return [f"model={json.dumps(str(d))}"]
        shutil.copytree(micro, d)
        if kind == "no config":
            (d / "config.json").unlink()
        elif kind == "no weights":
            (d / "model.safetensors").unlink()
        elif kind == "garbage config":
            (d / "config.json").write_text('{"model_type": "not_a_model"}')
        elif kind == "no eos":
            tc = json.loads((d / "tokenizer_config.json").read_text())
            tc.pop("eos_token")
            (d / "tokenizer_config.json").write_text(json.dumps(tc))
            gc = json.loads((d / "generation_config.json").read_text())
            gc.pop("eos_token_id", None)
            (d / "generation_config.json").write_text(json.dumps(gc))
        return [f"model={json.dumps(str(d))}"]
    return make


ROW = '{"prompt": "What is 2+3?", "answer": "5"}\n'
CASES = {
    # config keys, names and types
    "unknown loss": (["loss=ppo"], r"config key 'loss': unknown loss 'ppo'; valid: grpo, .*luspo"),
    "unknown advantage": (["advantage=gae"], r"config key 'advantage': unknown estimator 'gae'; valid: grpo"),
    "unknown reward": (['reward=[{name="shorter"}]'], r"config key 'reward': reward term #0: unknown reward "
                                                        r"'shorter'; valid names: correct, format"),
    "reward unknown hparam": (['reward=[{name="dler", max_lenn=8}]'], r"reward term #0 \(dler\): unknown key\(s\) max_lenn; valid: name, weight, max_len"),
    "unknown task": (["task=gsm9k"], r"config key 'task': unknown task 'gsm9k'; valid: data, .*arith_chain"),
    "misspelt key": (["lrr=0.1"], r"unknown config key 'lrr'; did you mean 'lr'"),
    "int as string": (['group_size="8"'], r"config key 'group_size': expected an integer, got '8'"),
    "word for a number": (["lr=fast"], r"config key 'lr': expected a number, got 'fast'"),
    "int for a mode": (["dynamic_sampling=1"], r"config key 'dynamic_sampling': 1; valid: 'off', 'drop', 'resample'"),
    "reward not a list": (["reward=3"], r"config key 'reward': expected a list"),
    "task_args not a table": (["task_args=4"], r"config key 'task_args': expected a dict"),
    "negative timeout": (["score_timeout_s=-1"], r"config key 'score_timeout_s': must be >= 0"),
    "set without =": (["steps"], r"--set 'steps': expected key=value"),
    # data files
    "malformed json line": (data_file("d.jsonl", ROW + '{"prompt": "x", \n'), r"d.jsonl: line 2: malformed JSON"),
    "missing field": (data_file("d.jsonl", ROW + '{"prompt": "x"}\n'),
                      r"d.jsonl: line 2: missing field 'answer' \(fields present: prompt\)"),
    "empty prompt": (data_file("d.jsonl", ROW + '{"prompt": "  ", "answer": "1"}\n'),
                     r"d.jsonl: line 2: field 'prompt': empty or non-text prompt"),
    "not an object": (data_file("d.jsonl", ROW + "[1, 2]\n"), r"d.jsonl: line 2: expected a JSON object"),
    "empty file": (data_file("d.jsonl", "\n\n"), r"d.jsonl: no rows"),
    "not utf-8": (data_file("d.jsonl", raw=b'{"prompt": "\xff\xfe", "answer": "1"}\n'), r"not valid UTF-8"),
    "unknown suffix": (data_file("d.txt", ROW), r"unsupported file type '.txt'"),
    "csv empty answer": (data_file("d.csv", "prompt,answer\nWhat is 1+1?,2\nWhat is 2+2?,\n"),
                         r"d.csv: row 2 \(line 3\): field 'answer': empty or non-text answer"),
    "missing data file": (lambda tmp: ["task=data", f"task_args.path={json.dumps(str(tmp / 'no.jsonl'))}"],
                          r"no.jsonl' not found"),
    "prompt longer than the context": (
        data_file("d.jsonl", ROW + json.dumps({"prompt": "add " * 200, "answer": "1"}) + "\n"),
        r"prompt 'd:1' has \d+ tokens, more than the limit of \d+ \(max_prompt_length, or the model's context "
        r"minus max_new_tokens\); set long_prompts = 'truncate'"),
    # model directories
    "model dir missing": (model_dir("missing"), r"model_dir .* does not exist"),
    "model dir is a file": (model_dir("file"), r"is a file, not a model directory"),
    "model dir without config": (model_dir("no config"), r"is not a model directory: no config.json"),
    "model dir without weights": (model_dir("no weights"), r"has no weights"),
    "model dir unknown architecture": (model_dir("garbage config"), r"cannot load(.|\n)*it must hold a transformers "
                                                                     r"model of a causal-LM architecture"),
    "tokenizer without eos": (model_dir("no eos"), r"the tokenizer has no eos_token; set one"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_rejected_with_a_clear_message(case, micro_dir, tmp_path, capsys):
    make, message = CASES[case]
    if callable(make):
        make = make(tmp_path, micro_dir) if make.__code__.co_argcount == 2 else make(tmp_path)
    base = [f"model={json.dumps(str(micro_dir))}", "eval_prompts=0", "steps=1", "train_prompts=16",
            "prompts_per_step=1", "group_size=2", "max_new_tokens=8"]
    argv = ["train", "--quiet", "--out", str(tmp_path / "run")]
    for item in base + make:
        argv += ["--set", item]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("lengthrl train: error: ")
    assert re.search(message, err), err
    if case != "model dir unknown architecture":  # that one quotes transformers' own (multi-line) reason
        assert len(err.strip().splitlines()) == 1


def test_bad_config_file(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--config", str(tmp_path / "none.toml")]) == 2
    (tmp_path / "bad.toml").write_text("loss = \n")
    assert main(["train", "--out", str(tmp_path), "--config", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    assert "none.toml' does not exist" in err and "bad.toml' is not valid TOML" in err


def test_tokenizer_without_pad_token_reuses_eos(micro_dir, tmp_path):
    d = shutil.copytree(micro_dir, tmp_path / "m")
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc.pop("pad_token")
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.warns(UserWarning, match="has no pad token; using its eos token"):
        model, tok = load_policy(d)
    assert tok.pad_token_id == tok.eos_token_id and model.config.pad_token_id == tok.eos_token_id


def test_count_of_bad_inputs():
    """The number reported for issue 9: every case above is a distinct bad input, rejected cleanly."""
    assert len(CASES) >= 25


def test_an_existing_run_is_never_overwritten_by_accident(micro_dir, tmp_path, capsys):
    """`train --out DIR` into a run without --resume: exit 2 naming the step, nothing touched; --overwrite starts
    over; --resume continues."""
    out = tmp_path / "run"
    argv = ["train", "--quiet", "--out", str(out)]
    for item in [f"model={json.dumps(str(micro_dir))}", "eval_prompts=0", "steps=2", "train_prompts=16",
                 "prompts_per_step=1", "group_size=2", "max_new_tokens=8", "checkpoint_every=1"]:
        argv += ["--set", item]
    assert main(argv) == 0
    capsys.readouterr()
    before = {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"lengthrl train: error: {out} holds a run up to step 2; pass --resume to continue it or "
                           "--overwrite to start over"), err
    assert {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    assert main(argv + ["--resume", "--overwrite"]) == 2
    assert main(argv + ["--overwrite", "--set", "steps=1"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1] and sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000001"]
    assert main(argv + ["--resume"]) == 0  # continues 1 -> 2
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize("held", ["metrics only", "checkpoints only", "torn metrics line"])
def test_any_trace_of_a_run_needs_resume_or_overwrite(held, micro_dir, tmp_path, capsys):
    """A run killed before its first checkpoint (metrics only), a directory of checkpoints without metrics, a
    metrics file whose last line was torn: each is a run, refused without --resume, untouched. A directory with
    other files only is not a run."""
    from lengthrl.models import load_policy
    from lengthrl.train import checkpoint as ck

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["train", "--quiet", "--out", str(out)]
    for item in [f"model={json.dumps(str(micro_dir))}", "eval_prompts=0", "steps=1", "train_prompts=16",
                 "prompts_per_step=1", "group_size=2", "max_new_tokens=8", "checkpoint_every=0"]:
        argv += ["--set", item]
    if held == "metrics only":
        (out / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n')
        step = 3
    elif held == "torn metrics line":
        (out / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "acc')
        step = 1
    else:
        model, tok = load_policy(micro_dir)
        ck.save_checkpoint(out, 4, model, tok, {"step": 4}, keep=2)
        step = 4
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"lengthrl train: error: {out} holds a run up to step {step}; pass --resume to continue "
                           "it or --overwrite to start over"), err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(argv[:3] + [str(other)] + argv[4:]) == 0  # other files only: not a run
    assert (other / "notes.txt").read_text() == "mine"
