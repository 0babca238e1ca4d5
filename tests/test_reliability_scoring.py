"""A verifier that raises, hangs, returns NaN or returns the wrong type is isolated: reward 0, counted, the
sample logged, the run goes on."""

import json
import threading
import time

import pytest
import torch

from lengthrl.models import save_tiny_random_model
from lengthrl.rewards import CompositeReward
from lengthrl.tasks import get_task
from lengthrl.tasks.base import Score
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer
from lengthrl.train.scoring import call_with_deadline, reward_batch, score_batch, verify_batch
from runkit import MICRO

RELEASE = threading.Event()  # lets the abandoned "hung" threads finish at the end of the module


@pytest.fixture(scope="module", autouse=True)
def _release_hung_threads():
    yield
    RELEASE.set()


def hang():
    RELEASE.wait(30)
    return "late"


def test_call_with_deadline_keeps_order_and_names_each_outcome():
    def fn(x):
        if x == "raise":
            raise RuntimeError("boom")
        if x == "hang":
            return hang()
        return x.upper()

    items = [("a",), ("hang",), ("raise",), ("b",), ("hang",), ("c",)]
    t0 = time.monotonic()
    out = call_with_deadline(fn, items, timeout_s=0.3)
    assert time.monotonic() - t0 < 5
    assert [s for s, _ in out] == ["ok", "timeout", "error", "ok", "timeout", "ok"]
    assert [v for s, v in out if s == "ok"] == ["A", "B", "C"]
    assert isinstance(out[2][1], RuntimeError)


def test_without_deadline_errors_are_still_caught():
    out = call_with_deadline(lambda x: 1 / x, [(1,), (0,)], timeout_s=0)
    assert out[0] == ("ok", 1.0) and out[1][0] == "error" and isinstance(out[1][1], ZeroDivisionError)


class FlakyTask:
    """arith_chain whose verifier misbehaves on chosen response indices (counted per call)."""

    def __init__(self, modes: dict[int, str]):
        self.inner, self.modes, self.name, self.calls = get_task("arith_chain"), modes, "flaky", 0
        self.lock = threading.Lock()

    def samples(self, *a, **k):
        return self.inner.samples(*a, **k)

    def score(self, sample, text):
        with self.lock:
            i, self.calls = self.calls, self.calls + 1
        mode = self.modes.get(i)
        if mode == "raise":
            raise ValueError("verifier crashed")
        if mode == "hang":
            return hang()
        if mode == "nan":
            return Score(correct=True, reward=float("nan"))
        if mode == "none":
            return None
        return Score(correct=True, reward=1.0)


def test_score_batch_isolates_every_kind_of_failure():
    task = FlakyTask({1: "raise", 2: "hang", 4: "nan", 5: "none"})
    s = task.samples("train", 2)
    reward = CompositeReward.from_config([{"name": "correct"}])
    texts = [f"r{i}" for i in range(8)]
    out = score_batch(task, reward, s, texts, torch.full((8,), 3), 4, timeout_s=0.3)
    assert out.rewards.tolist() == [1, 0, 0, 1, 0, 0, 1, 1]
    assert out.verifier_errors == 3 and out.verifier_timeouts == 1
    kinds = {f["index"]: f["kind"] for f in out.failures}
    assert kinds == {1: "error", 2: "timeout", 4: "error", 5: "error"}
    assert "verifier crashed" in out.failures[0]["error"] and out.failures[1]["response"] == "r2"
    assert "nan" in out.failures[2]["error"] and out.failures[0]["prompt_id"] == s[0].id


def test_verifying_in_parts_then_rewarding_the_whole_equals_score_batch():
    """What several ranks do (each verifies its prompts' responses, the verdicts are joined, the rewards are
    computed on the whole batch) gives score_batch's result, failure indices included."""
    task = get_task("arith_chain")
    s = task.samples("train", 4)
    texts = [f"<answer>{x.answer if i % 3 else 0}</answer>" for i, x in enumerate(y for y in s for _ in range(2))]
    texts[5] = ""  # no answer
    lengths = torch.tensor([float(len(t)) for t in texts])
    reward = CompositeReward.from_config([{"name": "correct"}, {"name": "kimi", "weight": 0.5},
                                          {"name": "format", "weight": 0.2}])
    whole = score_batch(task, reward, s, texts, lengths, 2)
    parts = [verify_batch(task, s[lo:lo + 2], texts[lo * 2:(lo + 2) * 2], 2) for lo in (0, 2)]
    joined = reward_batch(reward, s, parts[0][0] + parts[1][0], parts[0][1] + parts[1][1], lengths, 2)
    assert torch.equal(whole.rewards, joined.rewards) and torch.equal(whole.correct, joined.correct)
    assert whole.terms.keys() == joined.terms.keys() and all(torch.equal(whole.terms[k], joined.terms[k])
                                                             for k in whole.terms)
    assert 0 < int(whole.correct.sum()) < len(texts)


def test_the_run_goes_on_and_logs_the_failed_samples(tmp_path):
    d = save_tiny_random_model(tmp_path / "m", arch="qwen2", seed=0, **MICRO)
    cfg = build_config(extra=dict(model=str(d), task="arith_chain", train_prompts=16, eval_prompts=0,
                                  prompts_per_step=2, group_size=4, max_new_tokens=6, steps=2,
                                  checkpoint_every=0, sample_every=0, log_every=0, score_timeout_s=0.3))
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    tr.task = FlakyTask({0: "hang", 9: "raise"})  # step 1 response 0 hangs; step 2 response 1 raises
    rows = tr.run()
    assert [r["verifier_timeouts"] for r in rows] == [1, 0] and [r["verifier_errors"] for r in rows] == [0, 1]
    log = [json.loads(ln) for ln in (tmp_path / "run" / "score_errors.jsonl").read_text().splitlines()]
    assert [(r["step"], r["index"], r["kind"]) for r in log] == [(1, 0, "timeout"), (2, 1, "error")]
    assert all(r["response"] is not None and r["prompt_id"] for r in log)
