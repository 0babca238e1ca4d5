"""The diffusion organism of a task: a character vocabulary from the task's texts, a canvas sized to its prompts,
masked-diffusion pre-training (`lengthrl.dllm.pretrain`), saved and reused by recipe.

`task_organism(out, task, gen_length)` is what `lengthrl dllm passk`, `lengthrl dllm demo` and the trainer's
``policy = "diffusion"`` with ``model = "organism"`` use (the trainer caches it under
``$LENGTHRL_CACHE/dllm-organism-<task>-<hash>``).

The organism of `configs/justgrpo_organism.toml` (dllm_addition, max_operand 19, a 4-position canvas, the default
recipe) ships inside the package (`lengthrl/shipped/dllm-organism`, built with ``threads = 1``; `organism.json`
records its key and hash, the sha256 of every file, how it was built and its greedy AR-order accuracy on the
first 100 test prompts), so ``model = "organism"`` with that key loads it without building on every machine.
Any other key is built on this CPU and cached; such a build can differ across CPUs and thread counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

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


def organism_key(task_name: str, task_args: dict, gen_length: int, recipe: OrganismRecipe) -> tuple[dict, str]:
    """(the key that determines a task organism, its 12-hex-digit hash)."""
    key = {"task": task_name, "task_args": task_args, "gen_length": gen_length, **asdict(recipe)}
    blob = json.dumps(key, sort_keys=True, default=str)
    return key, hashlib.sha256(blob.encode()).hexdigest()[:12]


def cached_organism_dir(task_name: str, task_args: dict, gen_length: int, recipe: OrganismRecipe,
                        cache_dir: str | Path | None = None) -> Path:
    """`<cache>/dllm-organism-<task>-<hash of task args, gen_length, recipe>` (cache: `$LENGTHRL_CACHE`, else
    ``~/.cache/lengthrl``)."""
    from lengthrl.models.organism import default_cache_dir

    digest = organism_key(task_name, task_args, gen_length, recipe)[1]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in task_name)
    return Path(cache_dir or default_cache_dir()) / f"dllm-organism-{safe}-{digest}"


# the key of configs/justgrpo_organism.toml's organism, the one that ships
SHIPPED_KEY = {"task": "dllm_addition", "task_args": {"max_operand": 19}, "gen_length": 4}
SHIPPED_EVAL_PROMPTS = 100  # greedy AR-order accuracy recorded on task.samples("test", n=100, seed=0)


def shipped_dir() -> Path:
    from lengthrl.models.organism import SHIPPED_ROOT

    return SHIPPED_ROOT / "dllm-organism"


def shipped_organism(task_name: str, task_args: dict, gen_length: int, recipe: OrganismRecipe) -> Path | None:
    """The shipped diffusion organism's directory when its key is this one, else None (its files are checked
    against the sha256 in its `organism.json`: ConfigError when they differ)."""
    from lengthrl.models.organism import read_organism_info, verify_files

    d = shipped_dir()
    info = read_organism_info(d)
    if info is None or info.get("hash") != organism_key(task_name, task_args, gen_length, recipe)[1]:
        return None
    verify_files(d, info)
    return d


@torch.no_grad()
def greedy_ar_accuracy(model, tok, task: Task, samples, gen_length: int) -> dict:
    """Accuracy of greedy left-to-right decoding (the JustGRPO policy at temperature 0) on `samples`."""
    from lengthrl.dllm.rollout import generate_ar
    from lengthrl.rollout import left_pad
    from lengthrl.train.prompts import encode_prompts

    pids, pmask = left_pad(encode_prompts(tok, samples, None), tok.pad_token_id)
    roll = generate_ar(model, pids, pmask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id, gen_length=gen_length, temperature=0.0)
    texts = [tok.decode(r[m.bool()].tolist(), skip_special_tokens=True)
             for r, m in zip(roll.response_ids, roll.response_mask)]
    correct = sum(task.score(s, t).correct for s, t in zip(samples, texts))
    return {"accuracy": correct / max(1, len(samples)), "n": len(samples)}


def build_shipped(out: str | Path, threads: int = 1, log=print) -> Path:
    """Build the shipped diffusion organism (SHIPPED_KEY, default recipe) into `out` with `threads` CPU threads,
    then write its `organism.json` (key, hash, file sha256, build environment, greedy accuracy)."""
    from lengthrl.models.loading import quiet_progress
    from lengthrl.models.organism import MARKER, build_environment, file_hashes
    from lengthrl.tasks import get_task

    out = Path(out)
    recipe = OrganismRecipe()
    key, digest = organism_key(SHIPPED_KEY["task"], SHIPPED_KEY["task_args"], SHIPPED_KEY["gen_length"], recipe)
    task = get_task(key["task"], **key["task_args"])
    was = torch.get_num_threads()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        torch.set_num_threads(threads)
        with quiet_progress():
            lm = task_organism(tmp, task, key["gen_length"], recipe, log=log)
        env = build_environment()
        acc = greedy_ar_accuracy(lm.model, lm.tokenizer, task,
                                 task.samples("test", n=SHIPPED_EVAL_PROMPTS, seed=0), key["gen_length"])
        info = {"kind": "diffusion", "key": key, "hash": digest, "build": env,
                "built_by": "lengthrl.dllm.organism.build_shipped(out, threads=1)",
                "eval_prompts": {"split": "test", "n": SHIPPED_EVAL_PROMPTS, "seed": 0},
                "eval_greedy_ar": acc, "files": file_hashes(tmp)}
        (tmp / MARKER).write_text(json.dumps(info, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(was)
    return out
