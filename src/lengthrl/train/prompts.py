"""Prompt token ids for the trainer: the prompt format (plain text or chat template, `lengthrl.tasks.chat`) and
the prompt-length limit.

The limit is `max_prompt_length` when set, and never more than the context leaves (max_position_embeddings -
max_new_tokens). A longer prompt is, by `long_prompts`: 'error' (a ConfigError before step 1 naming the fixes),
'truncate' (its last `limit` tokens are kept, as TRL's max_prompt_length does, so the generation prompt of a
chat template survives) or 'filter' (dropped from the training pool and the held-out prompts before step 1).
The number of prompts truncated or dropped is logged."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample
from lengthrl.tasks.chat import PLAIN, PromptFormat

log = logging.getLogger("lengthrl.train")

LONG_PROMPTS = ("error", "truncate", "filter")


def prompt_limit(max_prompt_length: int, context: int | None, max_new_tokens: int) -> int | None:
    """The most prompt tokens: `max_prompt_length` (0 = no own limit) capped by context - max_new_tokens."""
    limits = [x for x in (max_prompt_length or None, context - max_new_tokens if context else None) if x is not None]
    if limits and min(limits) < 1:
        raise ConfigError(f"config key 'max_new_tokens': {max_new_tokens} leaves no room for a prompt in the "
                          f"model's context of {context} tokens; lower it")
    return min(limits) if limits else None


def encode_prompts(tokenizer, samples: Sequence[Sample], limit: int | None, fmt: PromptFormat = PLAIN,
                   long_prompts: str = "error") -> list[list[int]]:
    """Token ids [len(samples)] of each prompt under `fmt`; a prompt over `limit` is cut to its last `limit`
    tokens ('truncate') or raises a ConfigError ('error'; 'filter' pools hold no long prompt, see
    `fit_prompts`)."""
    out = []
    for s in samples:
        ids = fmt.encode(tokenizer, s)
        if not ids:
            raise ConfigError(f"prompt {s.id!r} is empty after tokenisation; fix the data")
        if limit is not None and len(ids) > limit:
            if long_prompts != "truncate":
                raise ConfigError(
                    f"prompt {s.id!r} has {len(ids)} tokens, more than the limit of {limit} (max_prompt_length, "
                    "or the model's context minus max_new_tokens); set long_prompts = 'truncate' (keep its last "
                    f"{limit} tokens) or 'filter' (drop such prompts), shorten it, or lower max_new_tokens")
            ids = ids[-limit:]
        out.append(ids)
    return out


def fit_prompts(tokenizer, samples: Sequence[Sample], limit: int | None, fmt: PromptFormat, long_prompts: str,
                what: str) -> tuple[list[Sample], int]:
    """(the samples to use, how many prompts are over `limit`), checked before step 1: 'filter' drops the long
    ones, 'truncate' keeps them (cut when encoded), 'error' raises on the first. Logs the count."""
    if long_prompts not in LONG_PROMPTS:
        raise ConfigError(f"config key 'long_prompts': {long_prompts!r}; valid: {', '.join(LONG_PROMPTS)}")
    if limit is None:
        encode_prompts(tokenizer, samples, None, fmt)  # errors early (empty prompts, template errors)
        return list(samples), 0
    lengths = [len(ids) for ids in encode_prompts(tokenizer, samples, None, fmt)]
    long = [s for s, n in zip(samples, lengths) if n > limit]
    if long and long_prompts == "error":
        encode_prompts(tokenizer, long[:1], limit, fmt)  # the error naming the first long prompt
    if long:
        done = "dropped" if long_prompts == "filter" else f"cut to their last {limit} tokens"
        log.warning("%d of %d %s prompts are longer than %d tokens: %s (long_prompts = %r)", len(long),
                    len(samples), what, limit, done, long_prompts)
    if long_prompts == "filter":
        ids = {s.id for s in long}
        return [s for s in samples if s.id not in ids], len(long)
    return list(samples), len(long)
