"""`run_eval`: sample n responses per prompt, verify them, and write an eval file.

Generic over the generator. A policy is any object with
    generate(prompt_ids: list[list[int]], n: int, params) -> batch
    tokenizer (called as tokenizer(text)["input_ids"], or .encode(text); .decode(ids, skip_special_tokens=True))
where `batch` has (attributes or keys) response_ids [P*n, T], response_mask [P*n, T], lengths [P*n] and
truncated [P*n] (optionally a texts(tokenizer) method), rows ordered prompt-major (prompt 0 samples 0..n-1,
then prompt 1, ...). The trainer's rollout engines provide this; a model directory is turned into one with
`load_policy_from_dir` (the trainer's policy registry, imported only when a path is given).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.metrics import summarize
from lengthrl.eval.records import EvalRecord, EvalResult, save_eval
from lengthrl.tasks.base import Sample, Task
from lengthrl.tasks.chat import PLAIN, PromptFormat

log = logging.getLogger("lengthrl.eval")


def _field(batch: Any, name: str) -> np.ndarray:
    """batch.name or batch[name] as a numpy array (torch CPU tensors and lists both work)."""
    val = getattr(batch, name, None)
    if val is None and isinstance(batch, dict):
        val = batch.get(name)
    if val is None:
        raise DataError(f"generator output has no field {name!r}; it must provide "
                        "response_ids, response_mask, lengths and truncated")
    if hasattr(val, "detach"):
        val = val.detach().cpu().numpy()
    return np.asarray(val)


def load_policy_from_dir(model_dir: str | Path, seed: int = 0, policy: str | None = None) -> tuple[Any, Any]:
    """(rollout engine, tokenizer) for a model directory through the trainer's policy registry
    (`lengthrl.train.policy.POLICIES`): `policy` ('ar', 'diffusion'; default: the one whose `detect` recognises
    the directory, `policy_of_dir`) loads it and gives its engine, the transformers engine (`HFEngine`) for
    'ar' and AR-order sampling (`DiffusionEngine`) for 'diffusion'. Lazy imports."""
    from lengthrl.train.config import TrainConfig  # noqa: PLC0415  (heavy; only for a path)
    from lengthrl.train.policy import POLICIES, policy_of_dir  # noqa: PLC0415

    path = Path(model_dir)
    if not path.exists():
        raise ConfigError(f"--model {path}: directory not found; give a run's model directory (e.g. RUN/final)")
    name = policy or policy_of_dir(path)
    adapter = POLICIES[name]
    model, tok = adapter.load(path)
    cfg = TrainConfig(policy=name, model=str(path), seed=seed, rollout_engine="hf")
    return adapter.engine(model, tok, cfg), tok


def _encode(tokenizer: Any, sample: Sample, fmt: PromptFormat = PLAIN, max_prompt_length: int | None = None
            ) -> list[int]:
    """Token ids of a prompt, as the trainer encodes it: the prompt format (plain text: tokenizer(text)
    ["input_ids"], else tokenizer.encode(text); or the chat template), cut to its last `max_prompt_length`
    tokens when set."""
    ids = fmt.encode(tokenizer, sample)
    return ids[-max_prompt_length:] if max_prompt_length else ids


def _texts(batch: Any, tokenizer: Any, ids: np.ndarray, mask: np.ndarray) -> list[str]:
    """Response texts: batch.texts(tokenizer) when the batch offers it (same decoding as in training), else the
    masked response ids decoded with skip_special_tokens."""
    if callable(getattr(batch, "texts", None)):
        return list(batch.texts(tokenizer))
    return [tokenizer.decode([int(t) for t in ids[r][mask[r]]], skip_special_tokens=True) for r in range(len(ids))]


def run_eval(policy: Any, task: Task, n_samples: int = 1, ks: Sequence[int] = (1,), sampling: Any = None, *,
             samples: Sequence[Sample] | None = None, n_prompts: int | None = None, split: str = "test",
             seed: int = 0, batch_prompts: int = 8, out: str | Path | None = None,
             baseline: dict[str, Any] | None = None, progress: bool = True, model_name: str | None = None,
             tokenizer: Any = None, truncated_correct: bool = False, prompt_format: PromptFormat | None = None,
             chat_template: str | None = None, system_prompt: str | None = None,
             max_prompt_length: int | None = None) -> EvalResult:
    """Evaluate `policy` on `task` with `n_samples` responses per prompt and return (and optionally write) the
    eval result.

    policy: a policy object (see module doc) or a model directory path. samples: the prompts (default
    `task.samples(split, n_prompts, seed)`). ks: the k of pass@k (each <= n_samples). sampling: passed to
    `generate` unchanged. batch_prompts: prompts per `generate` call. baseline: a summary dict (acc, len/mean)
    for AES. progress: show a rich progress bar. truncated_correct: count a truncated response (no EOS
    within the budget) by its verdict; by default it is wrong (reward 0), as in training. prompt_format: how
    prompts become token ids (`lengthrl.tasks.chat`; the trainer passes its own); without it, `chat_template`
    ('auto' / 'none' / a Jinja file; default plain text) and `system_prompt` build one from the tokenizer.
    max_prompt_length: keep each prompt's last this many tokens.
    """
    if n_samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {n_samples}")
    bad_k = [k for k in ks if k < 1 or k > n_samples]
    if bad_k:
        raise ConfigError(f"--k {','.join(map(str, bad_k))}: each k must be in 1..--samples ({n_samples})")
    if batch_prompts < 1:
        raise ConfigError(f"batch_prompts must be >= 1, got {batch_prompts}")
    if isinstance(policy, (str, Path)):
        model_name = model_name or str(policy)
        policy, loaded_tok = load_policy_from_dir(policy, seed)
        tokenizer = tokenizer if tokenizer is not None else loaded_tok
    tok = tokenizer if tokenizer is not None else getattr(policy, "tokenizer", None)
    if tok is None or not hasattr(policy, "generate"):
        raise ConfigError("policy must have generate(prompt_ids, n, params) and a tokenizer")
    if prompt_format is None:
        from lengthrl.tasks.chat import prompt_format as make_format  # noqa: PLC0415

        prompt_format = make_format(tok, chat_template, system_prompt, key="--chat-template")
    prompts = list(samples) if samples is not None else task.samples(split, n_prompts, seed)
    if not prompts:
        raise DataError(f"task {task.name!r} gave no prompts for split {split!r}; for a data file hold out rows "
                        "with --task-arg test_fraction=0.1, give --task-arg test_path=test.jsonl, or evaluate "
                        "another split with --split train")

    records: list[EvalRecord] = []
    verifier_errors = 0
    from rich.progress import Progress  # noqa: PLC0415

    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task(f"eval {task.name}", total=len(prompts) * n_samples)
        for start in range(0, len(prompts), batch_prompts):
            chunk = prompts[start:start + batch_prompts]
            batch = policy.generate([_encode(tok, s, prompt_format, max_prompt_length) for s in chunk], n_samples,
                                    sampling)
            ids, mask = _field(batch, "response_ids"), _field(batch, "response_mask").astype(bool)
            lengths, trunc = _field(batch, "lengths"), _field(batch, "truncated").astype(bool)
            if len(lengths) != len(chunk) * n_samples:
                raise DataError(f"generator returned {len(lengths)} rows for {len(chunk)} prompts x {n_samples} "
                                f"samples; it must return prompt-major rows, n per prompt")
            texts = _texts(batch, tok, ids, mask)
            for row in range(len(lengths)):
                sample = chunk[row // n_samples]
                text = texts[row]
                try:
                    score = task.score(sample, text)
                    correct, reward = bool(score.correct), float(score.reward)
                except Exception as e:  # noqa: BLE001  a failing verifier scores 0, as in training
                    verifier_errors += 1
                    log.warning("verifier of task %s failed on prompt %s: %r; scored as wrong", task.name, sample.id, e)
                    correct, reward = False, 0.0
                if trunc[row] and not truncated_correct:
                    correct, reward = False, 0.0
                records.append(EvalRecord(prompt_id=sample.id, sample_idx=row % n_samples,
                                          length=int(lengths[row]), correct=correct,
                                          truncated=bool(trunc[row]), response=text, reward=reward,
                                          level=(sample.meta or {}).get("level")))
            bar.advance(job, len(lengths))

    metrics = summarize(records, ks, baseline=baseline)
    metrics["verifier_errors"] = verifier_errors
    if dataclasses.is_dataclass(sampling) and not isinstance(sampling, type):
        sampling = dataclasses.asdict(sampling)
    extra = {"ks": list(ks), "sampling": sampling if isinstance(sampling, (dict, type(None))) else repr(sampling)}
    result = EvalResult(model=model_name or type(policy).__name__, task=task.name, n_samples=n_samples,
                        metrics=metrics, records=records, extra=extra)
    if out is not None:
        save_eval(result, out)
    return result
