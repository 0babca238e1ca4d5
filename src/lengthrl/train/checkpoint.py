"""Checkpoints: written atomically (temporary directory, fsync, rename), the last K kept, each with a manifest of
SHA-256 checksums; a truncated or corrupt checkpoint is detected and the previous one is used. Temporary
directories left by a write that was killed (`checkpoints/.tmp-*`) are removed before the next write and on
resume."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from lengthrl.errors import LengthRLError
from lengthrl.train.faults import pause_point

log = logging.getLogger("lengthrl.train")
PREFIX = "step_"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"  # a checkpoint moved aside while the same step is re-saved
SHARDS = "shards"  # a sharded checkpoint's torch.distributed.checkpoint directory (model and optimizer)


class CheckpointError(LengthRLError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def rng_state() -> dict:
    """The global random states: torch (CPU), Python, NumPy and, when CUDA is available, every CUDA device's
    (key "cuda", a list by device index), so a resumed GPU run draws what an uninterrupted one would."""
    s = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    """Restore `rng_state()`. A CUDA part is restored when this machine has CUDA (as many devices as both
    have); without CUDA it is skipped with a log line, and a state saved without CUDA leaves CUDA's as is."""
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    cuda = s.get("cuda")
    if cuda is None:
        return
    if not torch.cuda.is_available():
        log.info("checkpoint holds CUDA random states, but CUDA is not available here: they are not restored")
        return
    n = min(len(cuda), torch.cuda.device_count())
    if n < len(cuda):
        log.warning("checkpoint holds random states of %d CUDA devices, %d are visible: restoring %d",
                    len(cuda), torch.cuda.device_count(), n)
    for i in range(n):
        torch.cuda.set_rng_state(cuda[i], device=i)


def begin(run_dir: Path, step: int) -> Path:
    """A fresh temporary directory for the checkpoint of `step` (stale ones removed first)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    clean_tmp(run_dir)
    tmp = root / f"{TMP_PREFIX}{PREFIX}{step:06d}-{os.getpid()}"
    tmp.mkdir()
    return tmp


def _write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write of weights raises: OSError, torch's RuntimeError, or safetensors' SafetensorError
    (which is neither; a real full disk showed it)."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # an older safetensors
        return (OSError, RuntimeError)
    return (OSError, RuntimeError, SafetensorError)


WRITE_ERRORS = _write_errors()


def _what_failed(e: BaseException, where: Path) -> str:
    """'no space left on the device' for a full disk (errno ENOSPC, the message of a library that hides the
    errno, or under 64 MiB free where it failed), else the exception's type and first line."""
    import errno

    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    text = str(e)
    if (getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in text or "os error 28" in text
            or (free is not None and free < (64 << 20))):
        return "no space left on the device"
    first = (text.splitlines() or [type(e).__name__])[0][:200]
    return f"{type(e).__name__}: {first}"


def _write_error(run_dir: Path, step: int, e: BaseException) -> CheckpointError:
    """One line for a checkpoint that could not be written: what failed, and that nothing was lost."""
    root = run_dir / "checkpoints"
    what = _what_failed(e, root if root.exists() else run_dir)
    done = [p.name for p in list_checkpoints(run_dir)] if root.exists() else []
    kept = f"the last complete checkpoint, {done[-1]}, is intact" if done else "no earlier checkpoint exists"
    return CheckpointError(f"writing the checkpoint of step {step} in {root} failed: {what}; {kept}; free space "
                           f"(or fix the path) and run again with --resume")


def final_write_error(run_dir: Path, e: BaseException) -> CheckpointError:
    """One line for a final model that could not be written (the last checkpoint was written before it)."""
    done = [p.name for p in list_checkpoints(run_dir)]
    kept = f"the checkpoint {done[-1]} is complete" if done else "no checkpoint exists"
    return CheckpointError(f"writing the final model to {run_dir / 'final'} failed: "
                           f"{_what_failed(e, run_dir)}; {kept}; free space (or fix the path) and run again with "
                           "--resume")


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, state: dict, keep: int,
                    state_dict: dict | None = None, tmp: Path | None = None) -> Path:
    """Write run_dir/checkpoints/step_XXXXXX atomically: model (safetensors) + tokenizer + trainer state.

    `state_dict`: the model's full weights when its parameters are sharded (FSDP2), else None (its own).
    `tmp`: a directory from `begin` that already holds the weights and optimizer as shards (`save_shards`):
    the model directory then gets the config and tokenizer only."""
    root = run_dir / "checkpoints"
    final = root / f"{PREFIX}{step:06d}"
    from lengthrl.models.loading import quiet_progress

    try:
        if tmp is None:
            tmp = begin(run_dir, step)
            with quiet_progress():  # no per-shard progress bar in the training output
                model.save_pretrained(tmp / "model", safe_serialization=True, state_dict=state_dict)
            if not (tmp / "model" / "config.json").is_file():  # a LoRA policy writes its adapter only
                model.config.save_pretrained(tmp / "model")
        else:
            model.config.save_pretrained(tmp / "model")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
        torch.save(state, tmp / "trainer_state.pt")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {"step": step, "files": {str(p.relative_to(tmp)): _sha256(p) for p in files}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync_tree(tmp)
    except WRITE_ERRORS as e:  # a full disk shows as OSError(ENOSPC), torch's RuntimeError or a SafetensorError
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)  # incomplete: never a valid state
        raise _write_error(run_dir, step, e) from None
    pause_point(run_dir, "save", step)
    aside = root / f"{OLD_PREFIX}{PREFIX}{step:06d}-{os.getpid()}"
    if final.exists():  # re-saving a step: move the old copy aside first, so a valid copy always exists
        os.rename(final, aside)
        pause_point(run_dir, "replace", step)
    os.rename(tmp, final)
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def has_full_weights(ckpt: Path) -> bool:
    """True when the checkpoint holds the whole model as safetensors (format 'full'), False for shards."""
    return any((ckpt / "model").glob("*.safetensors"))


def _no_dist() -> bool:
    """True on one process (torch.distributed.checkpoint then reads and writes without a process group)."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized())


@contextlib.contextmanager
def _quiet_dcp():
    """torch.distributed.checkpoint warns on every single-process save and load, which is intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def save_shards(path: Path, model, optimizer=None) -> None:
    """Every rank writes its shards of the model (and of the optimizer state, when given) to `path`
    (torch.distributed.checkpoint; a collective under several processes; on one process the whole state).
    Pass no optimizer before its first step: reading an empty optimizer's state would initialise it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
    else:
        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optimizer": osd}
    with _quiet_dcp():
        dcp.save(state, checkpoint_id=str(path), no_dist=_no_dist())


def load_shards(path: Path, model, optimizer=None) -> None:
    """Load weights (and optimizer state, when given) written by `save_shards` into `model` / `optimizer`,
    whatever the number of ranks or the strategy that wrote them (torch.distributed.checkpoint reshards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
        with _quiet_dcp():
            dcp.load(state, checkpoint_id=str(path), no_dist=_no_dist())
        set_model_state_dict(model, state["model"])
        return
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optimizer": osd}
    with _quiet_dcp():
        dcp.load(state, checkpoint_id=str(path), no_dist=_no_dist())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def clean_tmp(run_dir: Path) -> list[Path]:
    """Tidy what an interrupted checkpoint write left (only one process writes a run directory): a complete
    temporary copy (`.tmp-step_N-PID`, every file of its manifest present and intact) or a copy moved aside
    (`.old-step_N-PID`) becomes `step_N` when no `step_N` exists, so the only valid state is never deleted;
    everything else is removed. Returns the paths removed."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    removed = []
    for prefix in (TMP_PREFIX, OLD_PREFIX):  # the newer copy first
        for p in sorted(q for q in root.iterdir() if q.name.startswith(prefix)):
            step = _step_of(p.name[len(prefix):])
            final = root / f"{PREFIX}{step:06d}" if step is not None else None
            if final is not None and p.is_dir() and not final.exists():
                try:
                    verify(p, step)
                except CheckpointError:
                    pass
                else:
                    log.warning("restoring %s from %s, left complete by an interrupted checkpoint write", final, p)
                    os.rename(p, final)
                    continue
            log.warning("removing %s, left by a checkpoint write that did not finish", p)
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _step_of(name: str) -> int | None:
    """`step_000003-1234` -> 3; None for any other name."""
    if not name.startswith(PREFIX):
        return None
    digits = name[len(PREFIX):].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def verify(ckpt: Path, step: int | None = None) -> None:
    """Raise CheckpointError unless every file of the manifest is present with its checksum (`step`: the
    step the directory must hold, by default the one its name says)."""
    mf = ckpt / "manifest.json"
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt}: manifest.json missing or unreadable ({e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise CheckpointError(f"checkpoint {ckpt}: manifest.json has no valid 'files' table of checksums")
    suffix = ckpt.name[len(PREFIX):]
    if step is None:
        step = int(suffix) if suffix.isdigit() else None
    if step is None or manifest.get("step") != step:
        raise CheckpointError(f"checkpoint {ckpt}: manifest.json is for step {manifest.get('step')!r}, not for "
                              "this directory's step")
    for required in ("trainer_state.pt", "model/config.json"):
        if required not in files:
            raise CheckpointError(f"checkpoint {ckpt}: manifest.json does not list {required}")
    if not any(rel.startswith("model/") and rel.endswith(".safetensors") for rel in files) and \
            f"{SHARDS}/.metadata" not in files:
        raise CheckpointError(f"checkpoint {ckpt}: manifest.json lists no model weights (model/*.safetensors or "
                              f"{SHARDS}/.metadata)")
    for rel, digest in files.items():
        p = ckpt / rel
        if not p.is_file():
            raise CheckpointError(f"checkpoint {ckpt}: file {rel} is missing")
        if _sha256(p) != digest:
            raise CheckpointError(f"checkpoint {ckpt}: file {rel} is corrupt (checksum mismatch)")


def latest_valid(run_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; corrupt ones are reported (logged warning naming the file) and
    skipped; stale temporary directories are removed first."""
    clean_tmp(run_dir)
    for ckpt in reversed(list_checkpoints(run_dir)):
        try:
            verify(ckpt)
            return ckpt
        except CheckpointError as e:
            log.warning("%s; falling back to the previous checkpoint", e)
    return None
