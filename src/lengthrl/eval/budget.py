"""Budget forcing at evaluation, and accuracy-vs-budget curves.

Budget forcing (s1, Muennighoff et al., arXiv 2501.19393, sec. 3.1, here with a token cap only): a response
gets at most B tokens of reasoning. A response that ends (EOS) within B tokens is kept as it is. One that has
not ended is cut at exactly B tokens, the answer cue is appended (for the lengthrl task format "\\n<answer>"),
and the model finishes the answer greedily or by sampling with at most `answer_tokens` more tokens:

    response = y_1..y_B  +  cue  +  model continuation (<= answer_tokens tokens, EOS included)

Evaluating a model at several budgets gives its accuracy-vs-budget curve: where extra reasoning tokens stop
paying. Lengths are in tokens, EOS included; `thinking` is the part before the cue (<= B).
A cut response whose first B tokens already contain the whole cue (the model had opened its answer) gets no
second cue: the model just finishes it (`cue_added` is False for that row). Either way the cut is at exactly
B tokens and the response holds the cue after the reasoning.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lengthrl.errors import ConfigError, DataError
from lengthrl.eval.runner import _encode, _field, load_policy_from_dir
from lengthrl.tasks.base import Sample, Task

DEFAULT_CUE = "\n<answer>"


@dataclass
class ForcedBatch:
    """Responses under a budget; rows prompt-major (n per prompt), like a RolloutBatch."""

    tokens: list[list[int]]  # [B] response token ids (reasoning + cue + answer for forced rows)
    thinking: list[int]  # [B] tokens before the cue (= B for forced rows, the whole response otherwise)
    forced: list[bool]  # [B] the row was cut at the budget
    cue_added: list[bool]  # [B] the cue was appended at the cut (False when the cut text already held it)
    truncated: list[bool]  # [B] still unfinished at the end (no EOS in the answer phase either)

    @property
    def lengths(self) -> list[int]:
        """Total response lengths in tokens (EOS included)."""
        return [len(t) for t in self.tokens]

    def texts(self, tokenizer) -> list[str]:
        """Decoded responses (special tokens dropped)."""
        return tokenizer.batch_decode(self.tokens, skip_special_tokens=True)


def cue_token_ids(tokenizer, cue: str) -> list[int]:
    """Token ids of the answer cue, without special tokens (BOS); an empty cue is refused."""
    ids = tokenizer(cue, add_special_tokens=False)["input_ids"] if callable(tokenizer) else tokenizer.encode(cue)
    ids = [int(i) for i in ids]
    if not ids:
        raise ConfigError(f"--answer-cue {cue!r}: tokenises to nothing; give the text that opens the answer, "
                          f"e.g. {DEFAULT_CUE!r}")
    return ids


def _rows(batch) -> list[list[int]]:
    ids, lengths = _field(batch, "response_ids"), _field(batch, "lengths")
    return [[int(t) for t in ids[r][: int(lengths[r])]] for r in range(len(lengths))]


def force_budget(engine, prompt_ids: list[list[int]], n: int, params, budget: int, cue_ids: Sequence[int],
                 answer_tokens: int = 16) -> ForcedBatch:
    """Sample `n` responses per prompt with at most `budget` reasoning tokens, forcing the answer on the rest.

    engine: a `RolloutEngine` (generate(prompt_ids, n, SamplingParams) -> batch with response_ids, lengths,
    truncated). params: the `SamplingParams` of both phases (their max_new_tokens is replaced by `budget`, then
    by `answer_tokens`). cue_ids: the cue's token ids (`cue_token_ids`).
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"--budgets: each budget must be an integer >= 1 token, got {budget!r}")
    if isinstance(answer_tokens, bool) or not isinstance(answer_tokens, int) or answer_tokens < 1:
        raise ConfigError(f"--answer-tokens must be an integer >= 1, got {answer_tokens!r}")
    if not cue_ids:
        raise ConfigError("budget forcing needs a non-empty answer cue")
    first = engine.generate(prompt_ids, n, dataclasses.replace(params, max_new_tokens=budget))
    rows, trunc = _rows(first), [bool(t) for t in _field(first, "truncated")]
    if len(rows) != len(prompt_ids) * n:
        raise DataError(f"generator returned {len(rows)} rows for {len(prompt_ids)} prompts x {n} samples")
    cut = [r for r in range(len(rows)) if trunc[r]]
    tokens, thinking = [list(x) for x in rows], [len(x) for x in rows]
    still = [False] * len(rows)
    if cut:
        for r in cut:
            if len(rows[r]) != budget:
                raise DataError(f"generator row {r} is marked truncated with {len(rows[r])} tokens, not the cap "
                                f"{budget}; a truncated row must hold exactly max_new_tokens tokens")
        cue_ids = list(cue_ids)
        add = {r: not _contains(rows[r], cue_ids) for r in cut}
        cont_prompts = [list(prompt_ids[r // n]) + rows[r] + (cue_ids if add[r] else []) for r in cut]
        second = engine.generate(cont_prompts, 1, dataclasses.replace(params, max_new_tokens=answer_tokens))
        answers, trunc2 = _rows(second), [bool(t) for t in _field(second, "truncated")]
        for j, r in enumerate(cut):
            tokens[r] = rows[r] + (cue_ids if add[r] else []) + answers[j]
            still[r] = trunc2[j]
    else:
        add = {}
    forced = [bool(t) for t in trunc]
    return ForcedBatch(tokens, thinking, forced, [add.get(r, False) for r in range(len(rows))], still)


def _contains(seq: list[int], sub: list[int]) -> bool:
    """Whether `sub` occurs as a contiguous run in `seq`."""
    k = len(sub)
    return any(seq[i:i + k] == sub for i in range(len(seq) - k + 1))


@dataclass
class BudgetPoint:
    """Accuracy and lengths of one model at one budget."""

    budget: int
    acc: float
    len_mean: float  # total tokens (reasoning + cue + answer)
    thinking_mean: float  # tokens before the cue
    forced_frac: float  # share of responses cut at the budget
    n: int  # responses scored
    records: list[dict] = field(default_factory=list, repr=False)


def budget_curve(policy, task: Task, budgets: Sequence[int], sampling, *, samples: Sequence[Sample] | None = None,
                 n_prompts: int | None = None, n_samples: int = 1, tokenizer=None, cue: str = DEFAULT_CUE,
                 answer_tokens: int = 16, batch_prompts: int = 16, split: str = "test", seed: int = 0,
                 progress: bool = False, chat_template: str | None = None,
                 system_prompt: str | None = None) -> list[BudgetPoint]:
    """Accuracy at each budget (sorted ascending) for one policy (an engine or a model directory). Prompts are
    encoded as `run_eval` encodes them: `chat_template` ('auto' / 'none' / a Jinja file; default plain text) and
    `system_prompt` (lengthrl.tasks.chat)."""
    budgets = sorted(set(budgets))
    if not budgets:
        raise ConfigError("--budgets: give at least one budget, e.g. --budgets 16,32,64")
    if isinstance(policy, (str, Path)):
        policy, loaded_tok = load_policy_from_dir(policy, seed)
        tokenizer = tokenizer if tokenizer is not None else loaded_tok
    tok = tokenizer if tokenizer is not None else getattr(policy, "tokenizer", None)
    if tok is None:
        raise ConfigError("budget_curve: pass tokenizer= (the policy has none)")
    cue_ids = cue_token_ids(tok, cue)
    from lengthrl.tasks.chat import prompt_format  # noqa: PLC0415

    fmt = prompt_format(tok, chat_template, system_prompt, key="--chat-template")
    prompts = list(samples) if samples is not None else task.samples(split, n_prompts, seed)
    if not prompts:
        raise DataError(f"task {task.name!r} gave no prompts for split {split!r}")
    from rich.progress import Progress  # noqa: PLC0415

    points = []
    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task(f"budgets {task.name}", total=len(budgets) * len(prompts))
        for B in budgets:
            recs = []
            for start in range(0, len(prompts), batch_prompts):
                chunk = prompts[start:start + batch_prompts]
                fb = force_budget(policy, [_encode(tok, s, fmt) for s in chunk], n_samples, sampling, B, cue_ids,
                                  answer_tokens)
                for r, text in enumerate(fb.texts(tok)):
                    s = chunk[r // n_samples]
                    try:
                        ok = bool(task.score(s, text).correct)
                    except Exception:  # noqa: BLE001  a failing verifier scores 0, as in run_eval
                        ok = False
                    recs.append({"prompt_id": s.id, "length": fb.lengths[r], "thinking": fb.thinking[r],
                                 "forced": fb.forced[r], "correct": ok, "response": text})
                bar.advance(job, len(chunk))
            points.append(BudgetPoint(
                budget=B, acc=float(np.mean([x["correct"] for x in recs])),
                len_mean=float(np.mean([x["length"] for x in recs])),
                thinking_mean=float(np.mean([x["thinking"] for x in recs])),
                forced_frac=float(np.mean([x["forced"] for x in recs])), n=len(recs), records=recs))
    return points


def parse_budgets(text: str) -> list[int]:
    """'16,32,64' -> [16, 32, 64]; a bad list raises ConfigError naming --budgets."""
    try:
        out = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        out = []
    if not out or out[0] < 1:
        raise ConfigError(f"--budgets {text!r}: give comma-separated token budgets >= 1, e.g. --budgets 16,32,64")
    return out


def save_curves(curves: dict[str, list[BudgetPoint]], path: str | Path, records: bool = True) -> Path:
    """Write {model: [point, ...]} as JSON (records included unless `records=False`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {m: [{k: v for k, v in dataclasses.asdict(p).items() if records or k != "records"} for p in pts]
            for m, pts in curves.items()}
    path.write_text(json.dumps(data, indent=1))
    return path


def plot_curves(curves: dict[str, list[BudgetPoint]], path: str | Path, title: str = "accuracy vs budget") -> Path:
    """Accuracy (left) and share of responses cut (right) against the budget (log2 axis), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, pts in curves.items():
        b = [p.budget for p in pts]
        a1.plot(b, [p.acc for p in pts], marker="o", label=name)
        a2.plot(b, [p.forced_frac for p in pts], marker="o", label=name)
    for ax, yl in ((a1, "accuracy"), (a2, "share of responses cut at the budget")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("reasoning budget B (tokens)")
        ax.set_ylabel(yl)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def knee(points: Sequence[BudgetPoint], tol: float = 0.01) -> int | None:
    """The smallest budget whose accuracy is within `tol` of the best on the curve (where extra tokens stop
    paying); None for an empty curve or one with no correct answer at any budget."""
    if not points:
        return None
    best = max(p.acc for p in points)
    if not best > 0:
        return None
    return min(p.budget for p in points if p.acc >= best - tol and math.isfinite(p.acc))


def run_budgets(models: Sequence[str], task: Task, budgets: Sequence[int], sampling, out: str | Path, *,
                n_prompts: int | None = None, n_samples: int = 1, cue: str = DEFAULT_CUE, answer_tokens: int = 16,
                batch_prompts: int = 16, split: str = "test", seed: int = 0,
                progress: bool = True, chat_template: str | None = None,
                system_prompt: str | None = None) -> dict[str, list[BudgetPoint]]:
    """`lengthrl eval --budgets`: the curve of each model directory on the same prompts; writes OUT (JSON) and
    OUT with suffix .png (the plot). Returns {model: points}."""
    prompts = task.samples(split, n_prompts, seed)
    curves = {}
    for m in models:
        curves[str(m)] = budget_curve(m, task, budgets, sampling, samples=prompts, n_samples=n_samples, cue=cue,
                                      answer_tokens=answer_tokens, batch_prompts=batch_prompts, seed=seed,
                                      progress=progress, chat_template=chat_template, system_prompt=system_prompt)
    out = Path(out)
    save_curves(curves, out)
    plot_curves(curves, out.with_suffix(".png"), title=f"accuracy vs reasoning budget on {task.name}")
    return curves
