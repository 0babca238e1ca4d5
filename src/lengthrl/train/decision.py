"""Whether a step updates the weights, decided once, as a value (`UpdateDecision`), by `decide_update`; and
how a step's outcome moves the count of consecutive bad (non-finite) steps (`count_bad_steps`).

The step never reads its own metrics to decide anything: the decision and the update's `UpdateResult` carry
what happened, and the metrics only report it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch


class Update(enum.Enum):
    """What a step does with its batch."""

    UPDATE = "update"  # run the PPO update (which may still skip an optimizer step on a non-finite loss/gradient)
    SKIP_NONFINITE = "skip_nonfinite"  # a reward term, the reward or an advantage is NaN/inf: nothing reaches the weights
    SKIP_NO_SIGNAL = "skip_no_signal"  # no kept group carries a learning signal (all advantages 0, no KL term)
    SKIP_EMPTY = "skip_empty"  # no response token is left for the loss (dynamic sampling / overlong filter)


@dataclass(frozen=True)
class UpdateDecision:
    kind: Update
    reason: str = ""  # why; for SKIP_NONFINITE the non-finite quantity (e.g. "reward term 'len' (response 3)")


def decide_update(nonfinite: str | None, beta: float, kept_advantages: torch.Tensor,
                  loss_tokens: float) -> UpdateDecision:
    """The step's decision, in this order of precedence:

    nonfinite: the first non-finite reward term, reward or advantage of the batch (None when all are finite);
    beta: the KL coefficient (a KL term is a learning signal even when every advantage is 0);
    kept_advantages: [K] the advantages of the rows dynamic sampling kept (the whole batch);
    loss_tokens: the number of response tokens that enter the loss, over every rank.

    With no signal the gradient is zero, and an AdamW step would still move the weights by its momentum, so no
    step is taken."""
    if nonfinite is not None:
        return UpdateDecision(Update.SKIP_NONFINITE, nonfinite)
    if beta == 0 and not bool((kept_advantages != 0).any()):
        return UpdateDecision(Update.SKIP_NO_SIGNAL, "every kept advantage is 0 and beta = 0")
    if loss_tokens > 0:
        return UpdateDecision(Update.UPDATE)
    return UpdateDecision(Update.SKIP_EMPTY, "no response token left for the loss")


def skip_metrics(decision: UpdateDecision, lr: float) -> dict:
    """The update metrics of a skipped step (the same keys a run has always logged)."""
    m = {"skipped_updates": int(decision.kind is Update.SKIP_NONFINITE), "optimizer_steps": 0, "lr": lr}
    if decision.kind is Update.SKIP_NONFINITE:
        m["nonfinite"] = decision.reason
    elif decision.kind is Update.SKIP_NO_SIGNAL:
        m["no_signal"] = 1
    return m


def count_bad_steps(bad_steps: int, last_nonfinite: str | None, decision: UpdateDecision, optimizer_steps: int,
                    skipped_steps: int, update_nonfinite: str | None) -> tuple[int, str | None]:
    """(consecutive bad steps, what was non-finite in the last bad one) after a step.

    A step is bad when something non-finite kept every optimizer step from happening: the decision skipped it
    (SKIP_NONFINITE), or the update skipped all its optimizer steps on a non-finite loss or gradient
    (`skipped_steps` > 0, `optimizer_steps` = 0, `update_nonfinite` naming which). A step that took an optimizer
    step resets the count; a step skipped for no signal or no tokens leaves it as it was."""
    if decision.kind is Update.SKIP_NONFINITE:
        return bad_steps + 1, decision.reason
    if decision.kind is Update.UPDATE and skipped_steps and not optimizer_steps:
        return bad_steps + 1, update_nonfinite or "loss or gradient"
    if optimizer_steps:
        return 0, last_nonfinite
    return bad_steps, last_nonfinite
