"""Prompt templates, some with a length budget, so that length-controlled rewards get their targets from the task.

A template renders `question` (and `budget`, in tokens, where it has one) into the prompt text; the budget is
stored in `Sample.target_len`, which the length rewards (L1, HBPO, Ruler...) read.

Budgets are chosen per sample, deterministically from (seed, sample id):
- a fixed `int`;
- a list of values, one picked per sample (HBPO's budgets 512/1024/2048/2560, arXiv 2507.15844);
- a range `(lo, hi)`, uniform integer (L1 samples n_gold uniformly, arXiv 2503.04697);
- or per row from the data file (`target_len_field`).
`expand_budgets` gives one copy of a sample per budget, for HBPO's budget sub-groups.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lengthrl.errors import ConfigError
from lengthrl.registry import Registry
from lengthrl.tasks.base import Sample


@dataclass(frozen=True)
class PromptTemplate:
    """`text` has a `{question}` field and, when `needs_budget`, a `{budget}` field (tokens)."""

    text: str
    needs_budget: bool = False
    doc: str = ""

    def render(self, question: str, budget: int | None = None) -> str:
        """The prompt for `question`; `budget` is required exactly when the template has one."""
        if self.needs_budget and budget is None:
            raise ConfigError(f"prompt template needs a length budget ({self.doc}); give --budgets or a target_len_field")
        return self.text.replace("{budget}", str(budget)).replace("{question}", question)


TEMPLATES: Registry[PromptTemplate] = Registry("prompt template")
TEMPLATES.register("plain", PromptTemplate("{question}", doc="the question as it is"))
TEMPLATES.register(
    "think_answer",
    PromptTemplate(
        "{question}\n\nFirst think step by step inside <think> </think>, then give only the final answer "
        "inside <answer> </answer>.",
        doc="DeepSeek-R1 style think/answer tags (arXiv 2501.12948); checked by the `think_answer` format",
    ),
)
TEMPLATES.register(
    "boxed",
    PromptTemplate(
        "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
        doc="MATH-style boxed answer",
    ),
)
TEMPLATES.register(
    "gsm8k",
    PromptTemplate("{question}\n\nSolve step by step; end with a line '#### <answer>'.", doc="GSM8K '#### n' answer"),
)
TEMPLATES.register(
    "l1",
    PromptTemplate(
        "{question}\n\nThink for {budget} tokens.", needs_budget=True, doc="L1 / LCPO-Exact (arXiv 2503.04697)"
    ),
)
TEMPLATES.register(
    "l1_max",
    PromptTemplate(
        "{question}\n\nThink for maximum {budget} tokens.", needs_budget=True, doc="L1 / LCPO-Max (arXiv 2503.04697)"
    ),
)
TEMPLATES.register(
    "hbpo",
    PromptTemplate(
        "{question}\n\nI will answer the question within {budget} tokens.",
        needs_budget=True,
        doc="HBPO budget sub-groups (arXiv 2507.15844); the paper puts the budget sentence at the start of the "
        "thinking, here it ends the prompt",
    ),
)
TEMPLATES.register(
    "ruler",
    PromptTemplate(
        "{question}\n\n[MLT:{budget}]",
        needs_budget=True,
        doc="Ruler meta length token (arXiv 2409.18943); the target is given in tokens",
    ),
)

HBPO_BUDGETS = (512, 1024, 2048, 2560)


def choose_budget(
    sample_id: str, seed: int = 0, budgets: int | Sequence[int] | None = None, budget_range: tuple[int, int] | None = None
) -> int | None:
    """The budget of one sample: fixed, one of a list, or uniform in [lo, hi]; deterministic in (seed, id)."""
    if budgets is not None and budget_range is not None:
        raise ConfigError("give either `budgets` or `budget_range`, not both")
    rng = random.Random(f"{seed}:{sample_id}")
    if budget_range is not None:
        lo, hi = budget_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= hi):
            raise ConfigError(f"budget_range must be two integers 0 < lo <= hi, got {budget_range!r}")
        return rng.randint(lo, hi)
    if budgets is None:
        return None
    values = [budgets] if isinstance(budgets, int) else list(budgets)
    if not values or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0 for b in values):
        raise ConfigError(f"budgets must be positive integers, got {budgets!r}")
    return rng.choice(values)


def apply_template(sample: Sample, template: str | PromptTemplate, budget: int | None = None) -> Sample:
    """A copy of `sample` whose prompt is the rendered template; `budget` (or the sample's own target_len)
    becomes `target_len`. The untemplated question is kept in `meta["question"]`."""
    tpl = TEMPLATES[template] if isinstance(template, str) else template
    question = sample.meta.get("question", sample.prompt)
    target = budget if budget is not None else sample.target_len
    prompt = tpl.render(question, target if tpl.needs_budget else None)
    return replace(sample, prompt=prompt, target_len=target, meta={**sample.meta, "question": question})


def expand_budgets(sample: Sample, template: str | PromptTemplate, budgets: Sequence[int] = HBPO_BUDGETS) -> list[Sample]:
    """One templated copy of `sample` per budget (HBPO's budget sub-groups). Ids become `id@budget`;
    `meta["base_id"]` keeps the prompt's id for per-prompt state."""
    out = []
    for b in budgets:
        s = apply_template(sample, template, b)
        out.append(replace(s, id=f"{sample.id}@{b}", meta={**s.meta, "base_id": sample.id}))
    return out
