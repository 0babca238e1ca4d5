"""The diffusion organism of a task: a character vocabulary from the task's texts, a canvas sized to its prompts,
masked-diffusion pre-training (`lengthrl.dllm.pretrain`), saved and reused by recipe.

`task_organism(out, task, gen_length)` is what `lengthrl dllm passk`, `lengthrl dllm demo` and the trainer's
``policy = "diffusion"`` with ``model = "organism"`` use (the trainer caches it under
``$LENGTHRL_CACHE/dllm-organism-<task>-<hash>``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lengthrl.dllm.model import LoadedDiffusionModel, TinyDiffusionConfig, char_tokenizer_for
from lengthrl.dllm.pretrain import build_diffusion_organism
from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Task


@dataclass(frozen=True)
class OrganismRecipe:
    """Pre-training settings of a task organism (defaults: about a minute on 2 CPU cores for addition)."""

    steps: int = 800
    hidden_size: int = 64
    pretrain_fraction: float = 1.0  # share of the train split seen in pre-training
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0 or self.hidden_size < 4 or not 0 < self.pretrain_fraction <= 1:
            raise ConfigError(f"organism recipe: need steps >= 0, hidden_size >= 4 and pretrain_fraction in (0, 1]; "
                              f"got {self}")


def task_texts(task: Task, test_prompts: int | None = None) -> tuple[list, list, list[str]]:
    """(train samples, test samples, every prompt / solution / answer text) of `task`."""
    train, test = task.samples("train"), task.samples("test", n=test_prompts, seed=0)
    if not train:
        raise ConfigError(f"task {task.name!r} has no train samples; a diffusion organism needs some")
    return train, test, [x for s in train + test for x in (s.prompt, s.solution or "", s.answer)]


def longest_solution(task: Task, tokenizer) -> int:
    """Tokens of the longest train solution (else answer), without EOS."""
    return max(len(tokenizer(s.solution or s.answer, add_special_tokens=False)["input_ids"])
               for s in task.samples("train"))


def task_organism(out: str | Path, task: Task, gen_length: int, recipe: OrganismRecipe | None = None,
                  log=None) -> LoadedDiffusionModel:
    """Build (or reuse, when `out` holds the same recipe) the diffusion organism of `task` on a `gen_length`
    canvas: `char_tokenizer_for` the task's texts, positions for the longest prompt + canvas (at least 64)."""
    recipe = recipe or OrganismRecipe()
    if gen_length < 1:
        raise ConfigError(f"gen_length must be >= 1, got {gen_length}")
    train, test, texts = task_texts(task)
    tok = char_tokenizer_for(texts)
    prompt_len = max(len(tok(s.prompt, add_special_tokens=False)["input_ids"]) for s in train + test)
    size = TinyDiffusionConfig(hidden_size=recipe.hidden_size, intermediate_size=2 * recipe.hidden_size,
                               max_positions=max(64, prompt_len + gen_length))
    n_train = max(1, int(len(train) * recipe.pretrain_fraction))
    return build_diffusion_organism(out, task, tok, recipe.steps, recipe.seed, gen_length=gen_length,
                                    n_train=n_train, log=log, cfg=size)


def cached_organism_dir(task_name: str, task_args: dict, gen_length: int, recipe: OrganismRecipe,
                        cache_dir: str | Path | None = None) -> Path:
    """`<cache>/dllm-organism-<task>-<hash of task args, gen_length, recipe>` (cache: `$LENGTHRL_CACHE`, else
    ``~/.cache/lengthrl``)."""
    from lengthrl.models.organism import default_cache_dir

    key = json.dumps({"task": task_name, "task_args": task_args, "gen_length": gen_length, **asdict(recipe)},
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in task_name)
    return Path(cache_dir or default_cache_dir()) / f"dllm-organism-{safe}-{digest}"
