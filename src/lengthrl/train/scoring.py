"""Scoring: responses -> verifier verdicts -> reward terms -> total reward.

A verifier that raises or hangs is isolated: the response gets reward 0 (a `Score` that is wrong and badly
formatted), the failure is counted (`verifier_errors`, `verifier_timeouts`) and returned in
`Scored.failures` so the trainer can log the sample, and the run goes on.

Hangs are caught with a deadline per response: the verifier runs in a daemon worker thread; when one call
overruns `timeout_s` the worker is abandoned (it is told to stop after its current call) and a fresh worker
scores the rest. A thread cannot be killed, so a verifier stuck in C code keeps one core busy until it
returns; verifiers with a heavy back end (math-verify) already run it in a killable worker process.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from dataclasses import dataclass, field
from dataclasses import replace
from typing import Callable

import torch

from lengthrl.rewards import CompositeReward
from lengthrl.tasks.base import Sample, Score, Task

log = logging.getLogger("lengthrl.train")
FAILED = Score(correct=False, reward=0.0, format_ok=False)


@dataclass
class Scored:
    rewards: torch.Tensor  # [B] total reward
    terms: dict[str, torch.Tensor]  # term -> [B] raw values
    correct: torch.Tensor  # [B] bool
    format_ok: torch.Tensor  # [B] bool
    verifier_errors: int  # responses whose verifier raised
    verifier_timeouts: int = 0  # responses whose verifier overran the deadline
    failures: list[dict] = field(default_factory=list)  # {index, prompt_id, kind: error|timeout, error}


def _call(fn: Callable, item) -> tuple[str, object]:
    try:
        return "ok", fn(*item)
    except Exception as e:  # noqa: BLE001 - a broken verifier must not end the run
        return "error", e


def call_with_deadline(fn: Callable, items: list[tuple], timeout_s: float | None) -> list[tuple[str, object]]:
    """[(status, value)] for fn(*item) over `items`, in order: ("ok", result), ("error", exception) or
    ("timeout", None) when one call took longer than `timeout_s` seconds. `timeout_s` None or <= 0: every call
    runs in this thread (exceptions still caught, no deadline)."""
    if not timeout_s or timeout_s <= 0:
        return [_call(fn, it) for it in items]
    out: list[tuple[str, object] | None] = [None] * len(items)
    i = 0
    while i < len(items):
        results: queue.Queue = queue.Queue()
        stop = threading.Event()

        def work(start: int = i, results: queue.Queue = results, stop: threading.Event = stop) -> None:
            for j in range(start, len(items)):
                if stop.is_set():
                    return
                results.put((j, _call(fn, items[j])))

        threading.Thread(target=work, daemon=True, name="lengthrl-verifier").start()
        while i < len(items):
            try:
                j, res = results.get(timeout=timeout_s)
            except queue.Empty:
                stop.set()  # abandon this worker; the next one starts after the hung item
                out[i] = ("timeout", None)
                i += 1
                break
            out[j] = res
            i = j + 1
    return out  # type: ignore[return-value]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) or isinstance(x, bool)


def truncated_wrong(score: Score) -> Score:
    """The verdict of a truncated response (hit the token budget without EOS): wrong, task reward 0, whatever
    its text holds (a cut-off ramble that happens to contain the number is not an answer; docs/metrics.md)."""
    return replace(score, correct=False, reward=0.0)


def score_batch(task: Task, reward: CompositeReward, samples: list[Sample], texts: list[str],
                lengths: torch.Tensor, group_size: int, truncated: torch.Tensor | None = None,
                timeout_s: float | None = None, truncated_correct: bool = False) -> Scored:
    """samples: one per prompt; texts/lengths/truncated: [prompts × group_size] responses, groups contiguous.
    `truncated` (hit the token budget without EOS) goes to the terms that take it (DLER: a cut-off response
    has length exactly max_len and must still get 0). `timeout_s`: deadline of one verifier call (None: none).
    = `verify_batch` then `reward_batch`; with several processes each rank verifies its own responses and the
    verdicts are gathered before the rewards, which need the whole batch."""
    scores, failures = verify_batch(task, samples, texts, group_size, timeout_s)
    return reward_batch(reward, samples, scores, failures, lengths, group_size, truncated, truncated_correct)


def verify_batch(task: Task, samples: list[Sample], texts: list[str], group_size: int,
                 timeout_s: float | None = None) -> tuple[list[Score], list[dict]]:
    """The verifier's `Score` of every response (FAILED for one that raised, hung or returned a non-Score)
    and the failures, {index, prompt_id, kind: error|timeout, error, response}, index into `texts`."""
    items = [(samples[i // group_size], text) for i, text in enumerate(texts)]
    scores: list[Score] = []
    failures: list[dict] = []
    for i, (status, value) in enumerate(call_with_deadline(task.score, items, timeout_s)):
        sample = items[i][0]
        if status == "ok" and isinstance(value, Score) and _finite(value.reward):
            scores.append(value)
            continue
        if status == "ok":  # a verifier that returns something else is as broken as one that raises
            what = f"reward {value.reward!r}" if isinstance(value, Score) else type(value).__name__
            status, value = "error", TypeError(f"score() returned {what}, not a Score with a finite reward")
        err = f"timed out after {timeout_s} s" if status == "timeout" else repr(value)
        log.warning("verifier of task %s %s on prompt %s: %s; reward 0", task.name,
                    "hung" if status == "timeout" else "raised", sample.id, err)
        failures.append({"index": i, "prompt_id": sample.id, "kind": status, "error": err[:500],
                         "response": texts[i][:2000]})
        scores.append(FAILED)
    return scores, failures


def reward_batch(reward: CompositeReward, samples: list[Sample], scores: list[Score], failures: list[dict],
                 lengths: torch.Tensor, group_size: int, truncated: torch.Tensor | None = None,
                 truncated_correct: bool = False, extra: dict[str, tuple[float, list[float]]] | None = None,
                 targets: torch.Tensor | None = None) -> Scored:
    """The reward terms and total of the whole batch from its verdicts (`verify_batch`). A truncated response
    is wrong (`truncated_wrong`) unless `truncated_correct` (config key of the same name). `extra`: the user's
    Python reward functions, {key: (weight, [N] values)}, added to the total and to the terms. `targets` [N]: the
    length target of each response (HBPO's sub-group budgets), instead of its prompt's `Sample.target_len`."""
    n = len(scores)
    if truncated is not None and not truncated_correct:
        cut = [bool(t) for t in truncated.tolist()]  # [B]
        scores = [truncated_wrong(s) if c else s for s, c in zip(scores, cut)]
    correct = torch.tensor([s.correct for s in scores], dtype=torch.bool)
    fmt = torch.tensor([s.format_ok for s in scores], dtype=torch.bool)
    task_reward = torch.tensor([float(s.reward) for s in scores], dtype=torch.float32)
    kw = {}
    if targets is not None:
        kw["target"] = targets
    elif any(s.target_len is not None for s in samples):
        kw["target"] = torch.tensor([float(samples[i // group_size].target_len or 0) for i in range(n)])
    if truncated is not None:
        kw["truncated"] = truncated
    ids = [samples[i // group_size].id for i in range(n)]
    needs = {k for t in reward.terms for k in _per_sample_keys(t.name)}
    kw = {k: v for k, v in kw.items() if k in needs}
    total, terms = reward(lengths, correct, group_size, format_ok=fmt, task_reward=task_reward,
                          prompt_ids=ids, **kw)
    for key, (weight, values) in (extra or {}).items():
        v = torch.tensor(values, dtype=torch.float64)  # [N]
        terms = {**terms, key: v.to(torch.float32)}
        total = (total.to(torch.float64) + weight * v).to(torch.float32)
    n_err = sum(f["kind"] == "error" for f in failures)
    return Scored(total, terms, correct, fmt, n_err, len(failures) - n_err, failures)


def _per_sample_keys(name: str) -> set[str]:
    from lengthrl.rewards import LENGTH_REWARDS

    return set(LENGTH_REWARDS[name].hparams) if name in LENGTH_REWARDS else set()
