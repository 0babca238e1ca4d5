"""More bad input, each rejected by `lengthrl train` with exit status 2 and one line naming the file or key and
what to do, never a traceback: unusable run directories, a full disk during a checkpoint (no work lost),
undecodable or hostile files, weights of the wrong shape, out-of-range keys, and OS errors at the edge."""

import errno
import json
import os
import re

import pytest

from lengthrl.cli import main

BASE = ["eval_prompts=0", "steps=1", "train_prompts=16", "prompts_per_step=1", "group_size=2", "max_new_tokens=8"]
ROW = '{"prompt": "What is 2+3?", "answer": "5"}\n'
CODE_ROW = '{"prompt": "Write f.", "answer": "-", "tests": ["assert f(1) == 1"]}\n'
CODE = ["task_args.kind=code", "task_args.tests_field=tests"]


def _train(micro_dir, out, sets, config=None):
    argv = ["train", "--quiet", "--out", str(out)]
    if config is not None:
        argv += ["--config", str(config)]
    for item in [f"model={json.dumps(str(micro_dir))}", *BASE, *sets]:
        argv += ["--set", item]
    return main(argv)


def _one_line(capsys, pattern):
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("lengthrl train: error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err), err
    return err


def _data(tmp_path, name, text=None, raw=None):
    p = tmp_path / name
    p.write_bytes(raw) if raw is not None else p.write_text(text)
    return ["task=data", f"task_args.path={json.dumps(str(p))}"]


def _parquet(tmp_path):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")
    return ["task=data", f"task_args.path={json.dumps(str(p))}"]


CASES = {
    "seed negative": (lambda t: ["seed=-1"], r"config key 'seed': must be in \[0, 2\*\*32\)"),
    "steps huge": (lambda t: ["steps=100000000000000000000"], r"config key 'steps': must be in \[1, "),
    "threads negative": (lambda t: ["threads=-3"], r"config key 'threads': must be >= 0"),
    "code scoring limits not a table": (
        lambda t: _data(t, "d.jsonl", CODE_ROW * 4) + CODE + ["task_args.scoring={limits = 3}"],
        r"task_args.scoring.limits must be a table of sandbox limits \(timeout_s, .*\), got 3"),
    "code scoring limits unknown key": (
        lambda t: _data(t, "d.jsonl", CODE_ROW * 4) + CODE + ["task_args.scoring={limits = {timeout = 3}}"],
        r"task_args.scoring.limits: unknown key\(s\) timeout; valid: timeout_s"),
    "code scoring limits bad value": (
        lambda t: _data(t, "d.jsonl", CODE_ROW * 4) + CODE + ["task_args.scoring={limits = {timeout_s = -1}}"],
        r"task_args.scoring.limits: SandboxLimits.timeout_s must be a positive number"),
    "math scoring unknown key": (lambda t: _data(t, "d.jsonl", ROW * 4) + ["task_args.scoring={limits = 3}"],
                                 r"task_args.scoring: unknown key\(s\) limits for a math data task; valid: "),
    "deep json line": (lambda t: _data(t, "d.jsonl", ROW + "[" * 100_000 + "]" * 100_000 + "\n"),
                       r"d.jsonl: line 2: .*nested too deeply"),
    "duplicate keys": (lambda t: _data(t, "d.jsonl", ROW + '{"prompt": "x", "answer": "1", "answer": "2"}\n'),
                       r"d.jsonl: line 2: duplicate key 'answer'"),
    "corrupt parquet": (_parquet, r"d.parquet: not a readable Parquet file"),
    "deep json file": (lambda t: _data(t, "d.json", '[{"prompt": "q", "answer": "1"}, ' + "[" * 100_000 + "]" * 100_000
                                       + "]"), r"d.json: JSON nested too deeply"),
    "duplicate keys in a json file": (lambda t: _data(t, "d.json", '[{"prompt": "q", "answer": "1", "prompt": "r"}]'),
                                      r"d.json: duplicate key 'prompt'"),
    "deep nesting inside a field": (lambda t: _data(t, "d.jsonl", ROW + '{"prompt": "x", "answer": "1", "meta": '
                                                    + "[" * 100_000 + "]" * 100_000 + "}\n"),
                                    r"d.jsonl: line 2: .*nested too deeply"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line(case, micro_dir, tmp_path, capsys):
    make, pattern = CASES[case]
    assert _train(micro_dir, tmp_path / "run", make(tmp_path)) == 2
    _one_line(capsys, pattern)


def test_toml_that_is_not_utf8(micro_dir, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b'loss = "grpo"\n# \xff\xfe\n')
    assert _train(micro_dir, tmp_path / "run", [], config=cfg) == 2
    _one_line(capsys, r"c.toml' is not UTF-8 text")


def test_out_that_is_a_file_or_under_a_file(micro_dir, tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("keep")
    assert _train(micro_dir, f, []) == 2
    _one_line(capsys, rf"--out {re.escape(str(f))} is a file, not a directory")
    assert _train(micro_dir, f / "run", []) == 2
    _one_line(capsys, rf"--out {re.escape(str(f / 'run'))}: .*is a file")
    assert f.read_text() == "keep"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_out_that_cannot_be_written(code, micro_dir, tmp_path, capsys, monkeypatch):
    """A read-only --out (simulated: the tests run as root, which permission bits do not stop)."""
    import pathlib

    real = pathlib.Path.mkdir
    out = tmp_path / "ro" / "run"

    def mkdir(self, *a, **k):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    assert _train(micro_dir, out, []) == 2
    _one_line(capsys, rf"--out {re.escape(str(out))}: cannot write there \(.*\); choose a writable directory")


def test_disk_full_during_a_checkpoint_loses_no_work(micro_dir, tmp_path, capsys, monkeypatch):
    """ENOSPC (injected) while writing step 2's checkpoint: one line saying the disk is full; step 1's
    checkpoint is intact and --resume continues from it."""
    import torch

    from lengthrl.train import checkpoint as ckpt

    out = tmp_path / "run"
    sets = ["steps=2", "checkpoint_every=1"]
    real = torch.save

    def save(obj, f, *a, **k):
        if "step_000002" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    assert _train(micro_dir, out, sets) == 2
    _one_line(capsys, r"step 2 .* no space left on the device; the last complete checkpoint, step_000001, is intact; "
                      r"free space .*run again with --resume")
    monkeypatch.setattr(torch, "save", real)
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step_000001"]
    assert _train(micro_dir, out, sets) == 2  # without --resume: refused, nothing touched
    capsys.readouterr()
    argv = ["train", "--quiet", "--out", str(out), "--resume"]
    for item in [f"model={json.dumps(str(micro_dir))}", *BASE, *sets]:
        argv += ["--set", item]
    assert main(argv) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step_000001", "step_000002"]


def test_weights_of_the_wrong_shape(micro_dir, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    d = shutil.copytree(micro_dir, tmp_path / "m")
    w = load_file(d / "model.safetensors")
    name = next(k for k in w if k.endswith("embed_tokens.weight"))
    w[name] = w[name][:, :-1].contiguous()
    save_file(w, d / "model.safetensors", metadata={"format": "pt"})
    assert _train(str(d), tmp_path / "run", []) == 2
    _one_line(capsys, r"model.safetensors.*shape.*config.json")


@pytest.mark.parametrize("extra", [0, 5])
def test_context_message_never_prints_a_negative_room(extra, micro_dir, tmp_path, capsys):
    """max_new_tokens at or above the model's context: refused as such (no negative "context - max_new_tokens")."""
    cfg = json.loads((__import__("pathlib").Path(micro_dir) / "config.json").read_text())
    ctx = cfg["max_position_embeddings"]
    sets = _data(tmp_path, "d.jsonl", ROW * 4) + [f"max_new_tokens={ctx + extra}"]
    assert _train(micro_dir, tmp_path / "run", sets) == 2
    err = _one_line(capsys, rf"config key 'max_new_tokens': {ctx + extra} leaves no room for a prompt")
    assert not re.search(r"-\d", err.replace("max_new_tokens", "")), err


def test_os_errors_at_the_edge_are_one_line(micro_dir, tmp_path, capsys, monkeypatch):
    """Any OSError that reaches the command line (here: the metrics file cannot be opened) is one line naming
    the file and what to do."""
    import builtins

    real = builtins.open

    def bad_open(file, *a, **k):
        if str(file).endswith("metrics.jsonl"):
            raise OSError(errno.EIO, "Input/output error", str(file))
        return real(file, *a, **k)

    monkeypatch.setattr(builtins, "open", bad_open)
    assert _train(micro_dir, tmp_path / "run", []) == 2
    _one_line(capsys, r"metrics.jsonl: Input/output error.*check the disk")


def test_code_task_without_namespaces_is_refused_before_training(micro_dir, tmp_path, capsys, monkeypatch):
    """No namespaces for the sandbox and no LENGTHRL_SANDBOX_WITHOUT_NAMESPACES=1: one line, exit 2, no step run."""
    from dataclasses import replace

    from lengthrl.verifiers import isolation
    from lengthrl.verifiers.sandbox import WEAK_ENV

    weak = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    monkeypatch.setattr("lengthrl.verifiers.sandbox.isolation", lambda: weak)
    monkeypatch.delenv(WEAK_ENV, raising=False)
    out = tmp_path / "run"
    assert _train(micro_dir, out, _data(tmp_path, "d.jsonl", CODE_ROW * 4) + CODE) == 2
    _one_line(capsys, rf"the code sandbox cannot create Linux namespaces here .*set {WEAK_ENV}=1")
    assert not (out / "metrics.jsonl").exists()


def _pages(root) -> int:
    """4 KiB pages the files under `root` take on a tmpfs."""
    return sum(-(-p.stat().st_size // 4096) for p in root.rglob("*") if p.is_file())


def _can_mount_tmpfs() -> bool:
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and a mount namespace for a small tmpfs")
@pytest.mark.parametrize("free_pages, failed", [
    (6, "the checkpoint of step 2"),
    pytest.param(19, "the checkpoint of step 2", marks=pytest.mark.slow),
    pytest.param(36, "the final model", marks=pytest.mark.slow),
], ids=["weights", "state", "final"])
def test_a_real_full_disk_is_one_line_and_loses_no_work(free_pages, failed, micro_dir, tmp_path):
    """A run directory on a tmpfs with `free_pages` pages left after step 1: step 2's checkpoint fails in the
    weights (safetensors raises its own SafetensorError, not an OSError: a traceback before), in the trainer
    state (torch's RuntimeError), or the final model fails. One line, exit 2; after the disk grows, --resume
    finishes the run."""
    import subprocess
    import sys

    from runkit import SRC

    sets = [f"model={json.dumps(str(micro_dir))}", *BASE, "steps=2", "checkpoint_every=1", "keep_checkpoints=2",
            "threads=1"]
    probe = tmp_path / "probe"  # the same run to step 1, on an ordinary disk: what step 1 leaves
    argv = ["train", "--quiet", "--out", str(probe)]
    for item in sets[:-4] + ["steps=1", "checkpoint_every=1", "threads=1"]:
        argv += ["--set", item]
    assert main(argv) == 0
    size = (_pages(probe) - _pages(probe / "final") + free_pages) * 4096
    mnt, log = tmp_path / "disk", tmp_path / "log"
    mnt.mkdir()
    log.mkdir()
    train = [sys.executable, "-m", "lengthrl", "train", "--quiet", "--out", str(mnt / "run")]
    for item in sets:
        train += ["--set", item]
    cmd = " ".join(json.dumps(a) for a in train)
    script = (f"mount -t tmpfs -o size={size} none {mnt} || exit 9\n"
              f"{cmd} 2> {log}/first; echo $? > {log}/rc1\n"
              f"ls {mnt}/run/checkpoints > {log}/ckpts\n"
              f"mount -o remount,size=16m {mnt}\n"
              f"{cmd} --resume 2> {log}/second; echo $? > {log}/rc2\n"
              f"cat {mnt}/run/metrics.jsonl > {log}/metrics; ls {mnt}/run/checkpoints {mnt}/run/final > {log}/after\n")
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    env.pop("LENGTHRL_PAUSE_AT", None)
    assert subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, timeout=600).returncode == 0
    first = (log / "first").read_text()
    errors = [ln for ln in first.splitlines() if ln.startswith("lengthrl train: error: ")]
    assert (log / "rc1").read_text().strip() == "2" and "Traceback" not in first, first
    assert len(errors) == 1 and re.search(rf"writing {failed} .* failed: no space left on the device; ", errors[0]), first
    assert "step_000001" in (log / "ckpts").read_text().split()  # the last complete checkpoint stayed
    assert (log / "rc2").read_text().strip() == "0", (log / "second").read_text()
    assert [json.loads(line)["step"] for line in (log / "metrics").read_text().splitlines()] == [1, 2]
    assert {"step_000001", "step_000002", "model.safetensors"} <= set((log / "after").read_text().split())


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and a mount namespace for a read-only tmpfs")
def test_a_really_read_only_out(micro_dir, tmp_path):
    """--out on a file system mounted read-only (root is not exempt from that, unlike permission bits)."""
    import subprocess
    import sys

    from runkit import SRC

    ro = tmp_path / "ro"
    ro.mkdir()
    train = [sys.executable, "-m", "lengthrl", "train", "--quiet", "--out", str(ro / "run")]
    for item in [f"model={json.dumps(str(micro_dir))}", *BASE]:
        train += ["--set", item]
    script = f"mount -t tmpfs -o ro,size=64k none {ro} || exit 9\n" + " ".join(json.dumps(a) for a in train)
    res = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=SRC))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (f"lengthrl train: error: --out {ro / 'run'}: cannot write there (Read-only file "
                                  "system); choose a writable directory"), res.stderr
