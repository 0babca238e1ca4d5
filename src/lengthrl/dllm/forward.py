"""How a diffusion LM is run: logits at chosen positions only, for any masked LM.

`logits_at(model, input_ids, attention_mask, positions)` returns the logits of one position per row. For
models whose LM head can be split off (the registered `HEADS`, e.g. BERT: ``model.bert`` then ``model.cls``)
the head runs on the selected hidden states only; for any other module ``forward(input_ids).logits`` is sliced.
Left padding is handled with ``attention_mask`` and, when the model's forward accepts it, ``position_ids``
(so a left-padded row gives the same result as the unpadded row).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lengthrl.registry import Registry


@dataclass
class Head:
    """A way to split a masked LM into body (hidden states) and LM head."""

    matches: Callable[[torch.nn.Module], bool]
    body: Callable[..., torch.Tensor]  # (model, **inputs) -> hidden [b, n, h]
    head: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]  # (model, hidden [N, h]) -> logits [N, V]


HEADS: Registry[Head] = Registry("masked-LM head adapter")

HEADS.register("bert", Head(
    matches=lambda m: hasattr(m, "bert") and hasattr(m, "cls"),
    body=lambda m, **kw: m.bert(**kw).last_hidden_state,
    head=lambda m, h: m.cls(h),
))


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def model_inputs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> dict:
    """Keyword inputs for `model`: ids, plus attention mask and position ids when there is left padding."""
    kw: dict = {"input_ids": input_ids}
    if attention_mask is not None and not bool(attention_mask.all()):
        kw["attention_mask"] = attention_mask
        if _accepts(model.forward, "position_ids"):
            # positions count only real tokens: a left-padded row sees the positions of the unpadded row
            kw["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return kw


def find_head(model: torch.nn.Module) -> Head | None:
    """The registered head adapter that fits `model`, or None (then full logits are sliced)."""
    return next((h for h in HEADS.values() if h.matches(model)), None)


def full_logits(model: torch.nn.Module, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """logits [b, n, V] of every position."""
    return model(**model_inputs(model, input_ids, attention_mask)).logits


def logits_at(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
              positions: torch.Tensor) -> torch.Tensor:
    """logits [b, V] at `positions` [b] (one position per row of `input_ids` [b, n])."""
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    kw = model_inputs(model, input_ids, attention_mask)
    head = find_head(model)
    if head is None:
        return model(**kw).logits[rows, positions]
    hidden = head.body(model, **kw)  # [b, n, h]
    return head.head(model, hidden[rows, positions])  # [b, V]
