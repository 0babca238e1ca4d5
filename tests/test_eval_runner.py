"""run_eval and the `eval` subcommand with a fake generator, tokenizer and task."""

import argparse
import json
from dataclasses import dataclass

import numpy as np
import pytest

from lengthrl.commands import COMMANDS
from lengthrl.errors import ConfigError, DataError
from lengthrl.eval import cli as eval_cli
from lengthrl.eval import runner
from lengthrl.eval.records import load_eval
from lengthrl.eval.runner import run_eval
from lengthrl.tasks.base import Sample, Score, Task


class CharTok:
    """Characters as token ids."""

    def encode(self, text):
        return [ord(ch) for ch in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class Double(Task):
    """Prompt 'double N', answer 2N; a response is correct when it starts with the answer."""

    name = "double"

    def samples(self, split="train", n=None, seed=0):
        return [Sample(id=f"p{i}", prompt=f"double {i}", answer=str(2 * i)) for i in range(n or 3)]

    def score(self, sample, response):
        ok = response.split(" ")[0] == sample.answer
        return Score(correct=ok, reward=float(ok))


@dataclass
class Batch:
    response_ids: np.ndarray
    response_mask: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray


class FakePolicy:
    """Sample j of a prompt is right when j is even; sample j has j padding words (longer = later)."""

    tokenizer = CharTok()

    def __init__(self):
        self.calls = []

    def generate(self, prompt_ids, n, params):
        self.calls.append((len(prompt_ids), n, params))
        rows = []
        for ids in prompt_ids:
            num = int("".join(chr(i) for i in ids).split()[1])
            for j in range(n):
                ans = 2 * num if j % 2 == 0 else 2 * num + 1
                rows.append(f"{ans}" + " pad" * j)
        T = max(len(r) for r in rows) + 2
        ids = np.zeros((len(rows), T), dtype=np.int64)
        mask = np.zeros((len(rows), T), dtype=np.int64)
        for r, text in enumerate(rows):
            ids[r, :len(text)] = [ord(ch) for ch in text]
            mask[r, :len(text)] = 1
        lengths = mask.sum(1)
        return Batch(ids, mask, lengths, lengths > 12)


def test_run_eval_records_and_metrics(tmp_path):
    pol = FakePolicy()
    out = tmp_path / "eval.json"
    res = run_eval(pol, Double(), n_samples=4, ks=(1, 2), sampling={"temperature": 1.0}, n_prompts=3,
                   batch_prompts=2, out=out, progress=False)
    assert [c[0] for c in pol.calls] == [2, 1]  # 3 prompts in batches of 2
    assert len(res.records) == 12
    r0 = res.records[0]
    assert (r0.prompt_id, r0.sample_idx, r0.correct, r0.response) == ("p0", 0, True, "0")
    assert res.records[5].response == "3 pad" and not res.records[5].correct  # p1, sample 1
    m = res.metrics
    assert m["acc"] == 0.5 and m["pass@1"] == 0.5
    assert m["pass@2"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    # lengths per prompt p0: "0", "1 pad", "0 pad pad", "1 pad pad pad" = 1, 5, 9, 13
    assert res.records[3].length == 13 and res.records[3].truncated
    assert m["trunc_rate"] == pytest.approx(3 / 12)
    loaded = load_eval(out)
    assert loaded.task == "double" and loaded.n_samples == 4 and len(loaded.records) == 12
    assert loaded.metrics["pass@2"] == pytest.approx(m["pass@2"])
    assert json.loads(out.read_text())["sampling"] == {"temperature": 1.0}


def test_run_eval_bad_config():
    with pytest.raises(ConfigError, match="--k 8"):
        run_eval(FakePolicy(), Double(), n_samples=4, ks=(1, 8), progress=False)
    with pytest.raises(ConfigError, match="--samples"):
        run_eval(FakePolicy(), Double(), n_samples=0, progress=False)

    class Short(FakePolicy):
        def generate(self, prompt_ids, n, params):
            b = super().generate(prompt_ids, n, params)
            return Batch(b.response_ids[:1], b.response_mask[:1], b.lengths[:1], b.truncated[:1])

    with pytest.raises(DataError, match="prompt-major"):
        run_eval(Short(), Double(), n_samples=2, progress=False)


def test_eval_command(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "load_policy_from_dir", lambda d, seed=0: (FakePolicy(), CharTok()))
    monkeypatch.setattr(eval_cli, "resolve_task", lambda name, data, args=None: Double())
    cmd = COMMANDS["eval"]
    p = argparse.ArgumentParser()
    cmd.add_args(p)
    out = tmp_path / "e.json"
    args = p.parse_args(["--model", str(tmp_path), "--task", "double", "--samples", "4", "--k", "1,2",
                         "--prompts", "2", "--out", str(out), "--no-progress"])
    assert cmd.run(args) == 0
    assert load_eval(out).metrics["n_prompts"] == 2
    with pytest.raises(ConfigError, match="--k"):
        eval_cli.parse_ks("1,x")
    assert eval_cli.parse_task_args(["digits=3", "name=abc"]) == {"digits": 3, "name": "abc"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        eval_cli.parse_task_args(["digits"])


class CallTok(CharTok):
    """A callable tokenizer, as HF tokenizers are."""

    def __call__(self, text):
        return {"input_ids": self.encode(text)}


def test_batch_texts_and_callable_tokenizer():
    class TextBatch(Batch):
        def texts(self, tok):
            return ["0" if i % 2 == 0 else "nope" for i in range(len(self.lengths))]

    class Pol(FakePolicy):
        tokenizer = CallTok()

        def generate(self, prompt_ids, n, params):
            b = super().generate(prompt_ids, n, params)
            return TextBatch(b.response_ids, b.response_mask, b.lengths, b.truncated)

    res = run_eval(Pol(), Double(), n_samples=2, n_prompts=1, progress=False)
    assert [r.response for r in res.records] == ["0", "nope"]
    assert [r.correct for r in res.records] == [True, False]


def test_model_dir_errors(tmp_path):
    with pytest.raises(ConfigError, match="directory not found"):
        run_eval(str(tmp_path / "nope"), Double(), progress=False)


def test_failing_verifier_scores_wrong():
    class Flaky(Double):
        def score(self, sample, response):
            if "pad pad" in response:
                raise RuntimeError("verifier crashed")
            return super().score(sample, response)

    res = run_eval(FakePolicy(), Flaky(), n_samples=4, n_prompts=2, progress=False)
    # samples 2 and 3 of each prompt contain "pad pad": 4 errors, scored wrong; sample 0 is right
    assert res.metrics["verifier_errors"] == 4 and res.metrics["acc"] == 0.25
