"""The model organism: a tiny Llama-architecture model warmed up from scratch on the procedural tasks.

Its supervised data mixes three solution styles per task (concise, step-by-step, verbose with self-checks), so
the warmed-up model answers with lengths that RL can move both ways, and its held-out accuracy leaves room to
improve. The result is an ordinary local model directory (safetensors + tokenizer files + `organism.json`),
cached under a hash of its config and loaded like any user model with `load_policy`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from lengthrl.errors import ConfigError
from lengthrl.models.loading import quiet_progress
from lengthrl.models.sft import encode_example, train_sft
from lengthrl.models.tiny import TinyModelSpec, count_parameters, make_model
from lengthrl.models.tokenizer import build_char_tokenizer
from lengthrl.tasks.procedural import PROCEDURAL_TASKS, make_procedural_task

ORGANISM_VERSION = 1  # bump when the recipe changes in a way the config does not capture
MARKER = "organism.json"


@dataclass
class OrganismConfig:
    """Everything that determines the organism (its hash names the cache directory)."""

    # count_letters only: it is the task the 0.8M model learns within a CPU budget (a 600-step mix of all three
    # tasks reached 8% / 33% / 5% held-out greedy accuracy on arith_chain / count_letters / sort_digits)
    tasks: tuple[str, ...] = ("count_letters",)
    task_knobs: dict[str, dict] = field(default_factory=dict)  # task name -> difficulty knobs
    model: TinyModelSpec = field(default_factory=TinyModelSpec)
    n_train: int = 20000  # training problems per task
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 30
    seed: int = 0
    n_eval: int = 100  # held-out problems per task for the report
    eval_max_new_tokens: int = 200

    def validate(self) -> None:
        """Raise ConfigError naming the bad field."""
        if not self.tasks:
            raise ConfigError("organism tasks is empty; valid: " + ", ".join(PROCEDURAL_TASKS))
        for t in self.tasks:
            if t not in PROCEDURAL_TASKS:
                raise ConfigError(f"organism tasks: unknown task {t!r}; valid: {', '.join(PROCEDURAL_TASKS)}")
        for t in self.task_knobs:
            if t not in self.tasks:
                raise ConfigError(f"organism task_knobs: {t!r} is not one of tasks {list(self.tasks)}")
        for name in ("n_train", "steps", "batch_size", "n_eval", "eval_max_new_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"organism {name} must be an integer >= 1, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"organism lr must be > 0, got {self.lr!r}")
        self.model.validate()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    def hash(self) -> str:
        """Short hash of the config and the recipe version."""
        blob = json.dumps({"v": ORGANISM_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """`$LENGTHRL_CACHE`, else `~/.cache/lengthrl`."""
    return Path(os.environ.get("LENGTHRL_CACHE", Path.home() / ".cache" / "lengthrl")).expanduser()


def organism_dir(config: OrganismConfig, cache_dir: str | Path | None = None) -> Path:
    """Where the organism of `config` is cached: `<cache>/organism-<hash>`."""
    return Path(cache_dir or default_cache_dir()) / f"organism-{config.hash()}"


def make_config(**overrides) -> OrganismConfig:
    """An OrganismConfig with `overrides` (unknown keys -> ConfigError listing the valid ones)."""
    valid = {f.name for f in fields(OrganismConfig)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ConfigError(f"organism: unknown setting(s) {bad}; valid: {sorted(valid)}")
    if "model" in overrides and isinstance(overrides["model"], dict):
        overrides["model"] = TinyModelSpec(**overrides["model"])
    if "tasks" in overrides:
        overrides["tasks"] = tuple(overrides["tasks"])
    cfg = OrganismConfig(**overrides)
    cfg.validate()
    return cfg


def knob_defaults(task: str) -> dict:
    """The difficulty knobs of a procedural task with their defaults (its own and the style/split ones)."""
    if task not in PROCEDURAL_TASKS:
        raise ConfigError(f"--knob: unknown task {task!r}; valid: {', '.join(PROCEDURAL_TASKS)}")
    out = {}
    for cls in reversed(PROCEDURAL_TASKS[task].__mro__):
        if "__init__" in vars(cls) and cls is not object:
            for name, p in inspect.signature(cls.__init__).parameters.items():
                if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD:
                    out[name] = p.default
    return out


def _knob_value(where: str, text: str, default):
    """`text` read as the type of the knob's default: int, float, str, or a comma list of numbers (a tuple)."""
    kinds = {int: "an integer", float: "a number", str: "text", tuple: "comma-separated numbers, e.g. 1,2,2"}
    kind = type(default) if type(default) in kinds else str
    try:
        if kind is tuple:
            return tuple(float(x) for x in text.split(","))
        if kind is int:
            return int(text)
        return float(text) if kind is float else text
    except ValueError:
        raise ConfigError(f"--knob {where}={text}: {where} takes {kinds[kind]}, got {text!r}") from None


def parse_knobs(items: list[str] | None) -> dict[str, dict]:
    """``["count_letters.max_len=14", "count_letters.alphabet=ab"]`` -> ``{"count_letters": {...}}``.

    Each value is read as the type of the knob's default (int, float, str, or a comma list for
    ``style_weights``); the knobs of each task are then checked by building the task. A malformed item, an
    unknown task or knob, or a bad value raises a ConfigError naming the knob and the valid ones.
    """
    out: dict[str, dict] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        task, dot, knob = key.strip().partition(".")
        if not sep or not dot or not task or not knob or not text.strip():
            raise ConfigError(f"--knob expects TASK.KNOB=VALUE, got {item!r}; e.g. --knob count_letters.max_len=14")
        defaults = knob_defaults(task)
        if knob not in defaults:
            raise ConfigError(f"--knob {key}: {task} has no knob {knob!r}; valid knobs: "
                              + ", ".join(f"{task}.{k}" for k in defaults))
        out.setdefault(task, {})[knob] = _knob_value(key, text.strip(), defaults[knob])
    for task, knobs in out.items():
        try:
            make_procedural_task(task, **knobs)  # range and alphabet checks, errors naming the knob
        except ConfigError as e:
            raise ConfigError(f"--knob {task}: {e}") from None
    return out


@torch.no_grad()
def evaluate_accuracy(model, tokenizer, samples_by_task: dict, temperature: float, max_new_tokens: int,
                      seed: int = 0) -> dict:
    """Accuracy and mean response length (tokens, EOS included) per task on the given samples, one response each."""
    from lengthrl.rollout import HFEngine, SamplingParams

    engine = HFEngine(model, tokenizer, seed=seed)
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
    out = {}
    for name, samples in samples_by_task.items():
        task = make_procedural_task(name)
        correct, lengths, truncated = 0, 0, 0
        for i in range(0, len(samples), 64):
            chunk = samples[i : i + 64]
            batch = engine.generate([tokenizer(s.prompt).input_ids for s in chunk], 1, params)
            for s, text in zip(chunk, batch.texts(tokenizer)):
                correct += task.score(s, text).correct
            lengths += int(batch.lengths.sum())
            truncated += int(batch.truncated.sum())
        n = max(1, len(samples))
        out[name] = {"accuracy": correct / n, "mean_length": lengths / n, "truncation_rate": truncated / n, "n": len(samples)}
    return out


def _train_into(tmp: Path, cfg: OrganismConfig, minutes: float | None, log: Callable[[str], None]) -> dict:
    tok = build_char_tokenizer()
    model = make_model(cfg.model, tok, seed=cfg.seed)
    examples, evals = [], {}
    for name in cfg.tasks:
        task = make_procedural_task(name, **cfg.task_knobs.get(name, {}))
        examples += [encode_example(tok, s.prompt, s.solution) for s in task.samples("train", cfg.n_train, seed=cfg.seed)]
        evals[name] = task.samples("test", cfg.n_eval, seed=cfg.seed)
    n_params = count_parameters(model)
    log(f"organism: {n_params / 1e6:.2f}M params, {len(examples)} training traces, {cfg.steps} steps")
    every = max(1, cfg.steps // 10)

    def on_step(step: int, loss: float) -> None:
        if (step + 1) % every == 0 or step == 0:
            log(f"  step {step + 1}/{cfg.steps}  loss {loss:.3f}")

    res = train_sft(model, examples, tok.pad_token_id, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                    warmup_steps=cfg.warmup_steps, seed=cfg.seed, on_step=on_step,
                    max_seconds=None if minutes is None else 60.0 * minutes)
    log(f"organism: trained {res.steps} steps in {res.seconds:.0f}s ({res.tokens / res.seconds:.0f} response tokens/s); evaluating")
    t_eval = time.perf_counter()
    greedy = evaluate_accuracy(model, tok, evals, 0.0, cfg.eval_max_new_tokens, seed=cfg.seed)
    sampled = evaluate_accuracy(model, tok, evals, 1.0, cfg.eval_max_new_tokens, seed=cfg.seed)
    with quiet_progress():
        model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    info = {
        "config": cfg.to_dict(),
        "hash": cfg.hash(),
        "params": n_params,
        "sft_steps": res.steps,
        "sft_seconds": round(res.seconds, 1),
        "sft_cpu_seconds": round(res.cpu_seconds, 1),
        "sft_response_tokens": res.tokens,
        "eval_seconds": round(time.perf_counter() - t_eval, 1),
        "final_loss": sum(res.losses[-20:]) / len(res.losses[-20:]),
        # floats are summed in an order that depends on these: two builds of one config match only with both
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "eval_greedy": greedy,
        "eval_sampled_t1": sampled,
    }
    (tmp / MARKER).write_text(json.dumps(info, indent=2))
    return info


def read_organism_info(model_dir: str | Path) -> dict | None:
    """The `organism.json` of a built organism directory, or None."""
    p = Path(model_dir) / MARKER
    return json.loads(p.read_text()) if p.is_file() else None


def build_organism(
    out_dir: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    minutes: float | None = None,
    force: bool = False,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    **overrides,
) -> Path:
    """Build (or reuse) the model organism and return its directory.

    With no `out_dir` the organism lives in the cache, `<cache_dir>/organism-<hash of config>`; an existing
    complete directory for the same config is reused. The directory is written to a temporary sibling and
    renamed into place when complete, so an interrupted build leaves nothing half-written. `minutes` caps the
    SFT wall time (the step count may then be cut short; the config hash does not change). `overrides` are
    fields of `OrganismConfig` (tasks, task_knobs, model, n_train, batch_size, lr, ...).
    """
    if steps is not None:
        overrides["steps"] = steps
    cfg = make_config(seed=seed, **overrides)
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"organism minutes must be > 0, got {minutes!r}")
    out = Path(out_dir).expanduser() if out_dir is not None else organism_dir(cfg, cache_dir)
    log = log or (lambda msg: None)
    if out.exists():
        info = read_organism_info(out)
        if info is not None and info.get("hash") == cfg.hash() and not force:
            log(f"organism: reusing {out}")
            return out
        if not force:
            what = "an organism of another config" if info is not None else "something that is not an organism"
            raise ConfigError(f"organism out_dir {str(out)!r} already holds {what}; pass force=True (--force) "
                              f"to overwrite it or choose another directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _train_into(tmp, cfg, minutes, log)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"organism: written to {out}")
    return out


def resolve_model_dir(name: str) -> Path:
    """'organism' -> the cached built-in organism (built on first use); otherwise a local directory."""
    if name == "organism":
        return Path(build_organism())
    return Path(name)
