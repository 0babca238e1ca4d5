"""Shared code of the sandbox tests: the live processes of a trainer's sandbox runs, the run directories, and
a temporary directory of a test's own (other users of this machine may run sandboxes at the same time)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lengthrl.verifiers.sandbox import run_tag


def sandbox_processes(trainer: int | None = None) -> set[int]:
    """PIDs of live sandbox processes started by `trainer` (default: this process): their command line carries
    its run tag (forked daemons keep it)."""
    tag = run_tag(trainer).encode()
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if tag in (d / "cmdline").read_bytes():
                out.add(int(d.name))
        except OSError:
            pass
    return out


def run_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("lengthrl-sbx-*")}


def private_tmpdir(monkeypatch, tmp_path_factory, prefix: str, set_env: bool):
    """Yield a world-writable (sticky) directory that `tempfile` uses (and $TMPDIR too with `set_env`), removed
    afterwards; pytest's own temporary directory stays where it is."""
    tmp_path_factory.getbasetemp()
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", d)
    if set_env:
        monkeypatch.setenv("TMPDIR", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def namespaces_or_refusal(monkeypatch) -> None:
    """Where the sandbox has no Linux namespaces, the calling test's case cannot hold: check that untrusted code
    is then refused (without LENGTHRL_SANDBOX_WITHOUT_NAMESPACES=1) and skip the test; elsewhere do nothing."""
    import pytest

    from lengthrl.errors import LengthRLError
    from lengthrl.verifiers.sandbox import WEAK_ENV, isolation, run_program

    if isolation().namespaces:
        return
    monkeypatch.delenv(WEAK_ENV, raising=False)
    with pytest.raises(LengthRLError, match=f"cannot create Linux namespaces.*{WEAK_ENV}=1"):
        run_program("print(1)")
    pytest.skip("no Linux namespaces on this machine: untrusted code is refused here (checked); docs/security.md")
