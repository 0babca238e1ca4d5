"""`lengthrl train` and `lengthrl config show`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.train.config import describe, to_dict


@command("train", examples=[
             "lengthrl train --config configs/luspo.toml --out runs/luspo",
             "lengthrl train --config configs/dler.toml --set steps=20 --set lr=1e-4 --out runs/dler",
             "lengthrl train --config configs/gspo.toml --out runs/gspo --resume",
             "torchrun --nproc_per_node 2 -m lengthrl train --config configs/luspo.toml --out runs/luspo2",
             "lengthrl train --set model=/path/to/model --set task=data --set task_args.path=train.jsonl "
             "--out runs/mine",
         ])
def run_train(args) -> int:
    from lengthrl.train.device import fsdp_param_dtype
    from lengthrl.train.distributed import init_from_env, shutdown
    from lengthrl.train.loop import train
    from lengthrl.train.validate import build_config

    cfg = build_config(args.config, args.set)
    check_out_dir(Path(args.out))
    _guard_existing_run(Path(args.out), resume=args.resume, overwrite=args.overwrite)
    # several processes under torchrun (docs/scaling.md), else a no-op
    dist = init_from_env(cfg.dist_strategy, fsdp_param_dtype(cfg), device=cfg.device)
    try:
        tr = train(cfg, args.out, resume=args.resume, progress=not args.quiet, dist=dist)
    except BaseException:
        shutdown(dist, wait=False)  # the other ranks stop on the broken collective
        raise
    shutdown(dist)
    rows = tr.metrics.rows() if dist.is_main else []
    if rows:
        last = rows[-1]
        print(f"done: {len(rows)} steps; last acc {last['acc']:.3f}, mean length {last['len/mean']:.1f}; "
              f"outputs in {args.out}")
    return 0


@run_train.args
def _(p):
    p.add_argument("--config", default=None, help="TOML config (see configs/ and `lengthrl config show`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", required=True, help="run directory (metrics.jsonl, samples.jsonl, checkpoints/)")
    p.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an --out that holds a run (its metrics, samples and checkpoints are deleted)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


RUN_FILES = ("metrics.jsonl", "samples.jsonl", "score_errors.jsonl")


def check_out_dir(out: Path) -> None:
    """--out must be a directory this process can write (created when missing); ConfigError otherwise."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose another path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {out}: {parent} is a file, so no directory can be made under it; "
                                  "choose another path")
            break
    probe = out / f".lengthrl-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write there ({e.strerror or e}); choose a writable directory") from None


def existing_run_step(out: Path) -> int | None:
    """The last step of the run held in `out` (its newest checkpoint, else its last metrics line), or None when
    `out` holds no run."""
    from lengthrl.train import checkpoint as ckpt

    steps = [int(p.name[len(ckpt.PREFIX):]) for p in ckpt.list_checkpoints(out) if p.name[len(ckpt.PREFIX):].isdigit()]
    if steps:
        return max(steps)
    metrics = out / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        import json

        last = 0
        for line in metrics.read_text(errors="replace").splitlines():
            try:
                last = max(last, int(json.loads(line).get("step", 0)))
            except (ValueError, TypeError, AttributeError):
                pass
        return last
    return None


def _guard_existing_run(out: Path, resume: bool, overwrite: bool) -> None:
    """Never lose a run by accident: an --out that holds one needs --resume (continue) or --overwrite."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run in --out, or start over")
    if resume or not out.is_dir():
        return
    step = existing_run_step(out)
    if step is None:
        return
    if not overwrite:
        raise ConfigError(f"{out} holds a run up to step {step}; pass --resume to continue it or --overwrite to "
                          "start over")
    if int(os.environ.get("RANK", "0")) == 0:  # one process deletes (torchrun)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        for f in RUN_FILES:
            (out / f).unlink(missing_ok=True)


@command("config", examples=["lengthrl config show", "lengthrl config show --config configs/luspo.toml --set steps=5"])
def run_config(args) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.config or args.set:
        from lengthrl.train.validate import build_config

        cfg = to_dict(build_config(args.config, args.set))
        for k, v in cfg.items():
            print(f"{k} = {v!r}")
        return 0
    table = Table(title="training config keys (lengthrl.train.config.TrainConfig)")
    for col in ("key", "type", "default", "doc"):
        table.add_column(col)
    for row in describe():
        table.add_row(*row)
    Console(width=160).print(table)
    return 0


@run_config.args
def _(p):
    p.add_argument("action", choices=["show"], help="show")
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
