"""The model organism: a tiny Llama-architecture model warmed up from scratch on the procedural tasks.

Its supervised data mixes three solution styles per task (concise, step-by-step, verbose with self-checks), so
the warmed-up model answers with lengths that RL can move both ways, and its held-out accuracy leaves room to
improve. The result is an ordinary local model directory (safetensors + tokenizer files + `organism.json`),
loaded like any user model with `load_policy`.

The default organism ships inside the package (`lengthrl/shipped/organism`, built once with ``threads = 1``;
`organism.json` records its config hash, the sha256 of every file, how it was built and its held-out greedy
accuracy), so every machine starts from the same weights: a build depends on the CPU's floating-point paths and
thread count. `build_organism()` with the default config returns the shipped directory without building;
``rebuild=True`` (`lengthrl organism --rebuild`) or any non-default setting builds on this CPU and caches the
result under a hash of its config.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import sys
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
from lengthrl.models.tokenizer import build_bpe_tokenizer, build_char_tokenizer
from lengthrl.tasks.procedural import PROCEDURAL_TASKS, make_procedural_task

ORGANISM_VERSION = 1  # bump when the recipe changes in a way the config does not capture
MARKER = "organism.json"
SHIPPED_ROOT = Path(__file__).resolve().parents[1] / "shipped"
SHIPPED_ORGANISM = SHIPPED_ROOT / "organism"
CPU_NOTE = ("a build depends on the CPU's floating-point paths and thread count: its weights, and the figures of "
            "runs from it, can differ from the shipped organism and from a build on another CPU")


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
    # "char" (one token per character, the default organism) or "bpe" (byte-level BPE learned on the SFT
    # traces, digits one per token, as real models' tokenizers); fields added after recipe version 1 enter the
    # hash only when they differ from their defaults, so the shipped organism keeps its hash
    tokenizer: str = "char"
    bpe_vocab_size: int = 512

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
        if self.tokenizer not in ("char", "bpe"):
            raise ConfigError(f"organism tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")
        if not isinstance(self.bpe_vocab_size, int) or self.bpe_vocab_size < 260:
            raise ConfigError(f"organism bpe_vocab_size must be an integer >= 260, got {self.bpe_vocab_size!r}")
        self.model.validate()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    def hash(self) -> str:
        """Short hash of the config and the recipe version."""
        d = self.to_dict()
        for f in fields(self):
            if f.name in _LATER_FIELDS and d[f.name] == f.default:
                del d[f.name]
        blob = json.dumps({"v": ORGANISM_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


_LATER_FIELDS = ("tokenizer", "bpe_vocab_size")

# The reasoning organism (docs/organism.md): multi-digit addition, where the step-by-step trace beats the direct
# guess by more the more digits there are, a byte-level BPE tokenizer, ~1.8M parameters, an SFT mix of concise
# and column-by-column traces. `lengthrl organism --preset reasoning`.
PRESETS: dict[str, dict] = {
    "reasoning": {
        "tasks": ("long_add",),
        "task_knobs": {"long_add": {"min_digits": 1, "max_digits": 6, "style_weights": (1.0, 1.0, 0.0)}},
        "tokenizer": "bpe",
        "bpe_vocab_size": 512,
        "model": {"arch": "llama", "hidden_size": 192, "num_layers": 4, "num_heads": 6, "num_kv_heads": 3,
                  "intermediate_size": 576, "max_position_embeddings": 512, "tie_word_embeddings": True},
        "steps": 1000,
        "eval_max_new_tokens": 160,
    },
}


def preset(name: str, **overrides) -> dict:
    """The settings of organism preset `name` (PRESETS) updated with `overrides` (a ConfigError names the valid
    presets)."""
    if name not in PRESETS:
        raise ConfigError(f"organism preset {name!r} is unknown; valid: {', '.join(PRESETS)}")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[name].items()}
    out.update(overrides)
    return out


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
    """`text` read as the type of the knob's default: bool (true/false), int, float, str, or a comma list of
    numbers (a tuple)."""
    kinds = {bool: "true or false", int: "an integer", float: "a number", str: "text",
             tuple: "comma-separated numbers, e.g. 1,2,2"}
    kind = type(default) if type(default) in kinds else str
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"--knob {where}={text}: {where} takes {kinds[bool]}, got {text!r}")
        return text.lower() == "true"
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


def file_hashes(model_dir: str | Path) -> dict[str, str]:
    """sha256 of every file of a model directory but `organism.json` (which records them), by file name."""
    d = Path(model_dir)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.iterdir()) if p.is_file() and p.name != MARKER}


def build_environment() -> dict:
    """What a build's floating-point results depend on, as far as it can be read: torch, threads, CPU."""
    return {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0], "machine": platform.machine(),
            "processor": platform.processor() or None, "system": platform.system()}


def verify_files(model_dir: str | Path, info: dict) -> None:
    """ConfigError unless the directory's files are exactly those `info["files"]` records (by sha256)."""
    want, have = info.get("files"), file_hashes(model_dir)
    if want != have:
        bad = sorted(k for k in set(want or {}) | set(have) if (want or {}).get(k) != have.get(k))
        raise ConfigError(f"organism {str(model_dir)!r}: files {bad} do not match the sha256 recorded in its "
                          f"{MARKER}; reinstall the package, or build one on this CPU with `lengthrl organism "
                          f"--rebuild` and pass its directory as model")


def shipped_organism(cfg: OrganismConfig | None = None) -> Path | None:
    """The shipped organism directory when it was built from `cfg` (default: the default config), else None.
    Its files are checked against the sha256 in its `organism.json` (ConfigError when they differ)."""
    cfg = cfg or OrganismConfig()
    info = read_organism_info(SHIPPED_ORGANISM)
    if info is None or info.get("hash") != cfg.hash():
        return None
    verify_files(SHIPPED_ORGANISM, info)
    return SHIPPED_ORGANISM


def _train_into(tmp: Path, cfg: OrganismConfig, minutes: float | None, log: Callable[[str], None]) -> dict:
    train, evals = {}, {}
    for name in cfg.tasks:
        task = make_procedural_task(name, **cfg.task_knobs.get(name, {}))
        train[name] = task.samples("train", cfg.n_train, seed=cfg.seed)
        evals[name] = task.samples("test", cfg.n_eval, seed=cfg.seed)
    if cfg.tokenizer == "bpe":  # merges learned on the training prompts and every style of their traces
        texts = [s.prompt + t for ss in train.values() for s in ss for t in s.meta["traces"].values()]
        tok = build_bpe_tokenizer(texts, cfg.bpe_vocab_size)
        log(f"organism: byte-level BPE tokenizer, {len(tok)} tokens")
    else:
        tok = build_char_tokenizer()
    model = make_model(cfg.model, tok, seed=cfg.seed)
    examples = [encode_example(tok, s.prompt, s.solution) for ss in train.values() for s in ss]
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
        "build": build_environment(),
        "built_by": f"build_organism({cfg.hash()!r} config, threads={torch.get_num_threads()})",
        # the held-out prompts of both evaluations: task.samples("test", n_eval, seed) of each task
        "eval_prompts": {"split": "test", "n": cfg.n_eval, "seed": cfg.seed, "max_new_tokens": cfg.eval_max_new_tokens},
        "eval_greedy": greedy,
        "eval_sampled_t1": sampled,
    }
    info["files"] = file_hashes(tmp)
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
    rebuild: bool = False,
    threads: int | None = None,
    **overrides,
) -> Path:
    """The model organism's directory: the shipped one, else built (or reused from the cache).

    With the default config, no `out_dir`, and neither `rebuild` nor `force`, this is the shipped organism
    (`SHIPPED_ORGANISM`, nothing is built). Otherwise the organism is built on this CPU (the log says the result
    can differ across CPUs); with no `out_dir` it lives in the cache, `<cache_dir>/organism-<hash of config>`,
    and an existing complete directory for the same config is reused (`rebuild` builds it anew). `threads`
    sets torch's CPU threads for the build (recorded in `organism.json`; default: leave torch's). The directory is written to a temporary sibling and
    renamed into place when complete, so an interrupted build leaves nothing half-written. `minutes` caps the
    SFT wall time (the step count may then be cut short; the config hash does not change). `overrides` are
    fields of `OrganismConfig` (tasks, task_knobs, model, n_train, batch_size, lr, ...).
    """
    if steps is not None:
        overrides["steps"] = steps
    cfg = make_config(seed=seed, **overrides)
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"organism minutes must be > 0, got {minutes!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"organism threads must be an integer >= 1, got {threads!r}")
    log = log or (lambda msg: None)
    if out_dir is None and not (rebuild or force):
        shipped = shipped_organism(cfg)
        if shipped is not None:
            log(f"organism: the shipped build {shipped}")
            return shipped
    force = force or rebuild
    out = Path(out_dir).expanduser() if out_dir is not None else organism_dir(cfg, cache_dir)
    if out.exists():
        info = read_organism_info(out)
        if info is not None and info.get("hash") == cfg.hash() and not force:
            log(f"organism: reusing {out}")
            return out
        if not force:
            what = "an organism of another config" if info is not None else "something that is not an organism"
            raise ConfigError(f"organism out_dir {str(out)!r} already holds {what}; pass force=True (--force) "
                              f"to overwrite it or choose another directory")
    shipped = "" if cfg.hash() != OrganismConfig().hash() else f" (the default config: the shipped build is {SHIPPED_ORGANISM})"
    log(f"organism: building on this CPU; {CPU_NOTE}{shipped}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    was_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        _train_into(tmp, cfg, minutes, log)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(was_threads)
    log(f"organism: written to {out}")
    return out


def resolve_model_dir(name: str) -> Path:
    """'organism' -> the organism shipped in the package (built and cached only for non-default knobs); otherwise a local directory."""
    if name == "organism":
        return Path(build_organism())
    return Path(name)
