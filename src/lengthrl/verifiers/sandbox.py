"""Run an untrusted Python program against tests in a separate, limited process.

Layers (each used when this machine allows it; `isolation()` reports which hold, `docs/security.md` explains):

- a new process session, killed as a whole (SIGKILL to the process group) at the wall-clock limit;
- a run init (the first sandboxed process, which forks the program): it reaps orphans and ends the run when
  the program ends, at its own deadline, or when the trainer dies (a lifeline pipe closes);
- assert tests run in a separate judge process that never executes the program (values come back as plain,
  typed JSON), so the program cannot rewrite the comparison, the harness or the verdict;
- seccomp: no new user namespaces (no nested mount rights);
- Linux namespaces via util-linux `unshare`: an empty network namespace (no interface but a down loopback),
  a PID namespace (the program is PID 1 there: when it ends, every process it started dies; it cannot see or
  signal outside processes) and a mount namespace with a private root: read-only system directories, no
  host file beyond them (no data, project, home, /tmp or socket files), and `/box`, a size- and inode-capped
  tmpfs, as the only writable working directory; without namespaces the sandbox refuses to run unless
  `LENGTHRL_SANDBOX_WITHOUT_NAMESPACES=1` is set;
- when started as root: the program runs as the unprivileged user `nobody` (uid 65534), so it cannot write
  root's files, signal root's processes, and RLIMIT_NPROC applies (the kernel exempts root from it);
- resource limits: RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE, no core files;
- a clean environment (PATH, LANG, HOME and TMPDIR only: no inherited secrets), `python -I -B`;
- an audit hook in the child that refuses every `socket.*` event (network blocked even without namespaces,
  for Python-level code);
- an output cap: the run is killed when stdout + stderr exceed `max_output_bytes`;
- its own temporary working directory, removed afterwards.

It is not a virtual machine: see docs/security.md for what is and is not guaranteed.
"""

from __future__ import annotations

import functools
import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from lengthrl.errors import ConfigError, LengthRLError

NOBODY = 65534
UID_BASE = 1_700_000_000  # per-run user ids are drawn from [UID_BASE, UID_BASE + UID_SPAN)
UID_SPAN = 1 << 20
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
_CHILD_SRC = Path(__file__).with_name("_sandbox_child.py")
WEAK_ENV = "LENGTHRL_SANDBOX_WITHOUT_NAMESPACES"  # "1": run untrusted code even without namespaces
RUN_TAG = "lengthrl-sbx-run"


def run_tag(pid: int | None = None) -> str:
    """The tag in the command line of every sandboxed process started by process `pid` (default: this one)."""
    return f"{RUN_TAG}:{os.getpid() if pid is None else pid}:"
_NS_FLAGS = ["--net", "--pid", "--mount", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run. Every field must be positive."""

    timeout_s: float = 10.0  # wall clock, whole run (start-up included)
    cpu_s: int = 5  # RLIMIT_CPU per process (SIGXCPU then SIGKILL)
    memory_bytes: int = 1 << 30  # RLIMIT_AS (address space) per process
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file the program may write
    nproc: int = 64  # RLIMIT_NPROC: processes + threads of the sandbox user
    nofile: int = 64  # RLIMIT_NOFILE: open file descriptors per process
    max_output_bytes: int = 1 << 20  # stdout + stderr; the run is killed beyond this
    disk_bytes: int = 64 << 20  # size of the run directory's tmpfs (private root only)

    def __post_init__(self):
        for name, v in vars(self).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ConfigError(f"SandboxLimits.{name} must be a positive number, got {v!r}")


def limits_from(value, where: str = "limits") -> SandboxLimits:
    """A SandboxLimits from a SandboxLimits, a dict of its fields, or None (the defaults); ConfigError naming
    `where` otherwise."""
    if value is None:
        return SandboxLimits()
    if isinstance(value, SandboxLimits):
        return value
    names = [f.name for f in fields(SandboxLimits)]
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of sandbox limits ({', '.join(names)}), got {value!r}")
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; valid: {', '.join(names)}")
    try:
        return SandboxLimits(**value)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclass
class SandboxResult:
    """What happened in one run. `passed` has one entry per test (False for tests that never ran)."""

    status: str  # "ok" | "error" | "timeout" | "output_limit" | "signal"
    passed: list[bool] = field(default_factory=list)
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0

    @property
    def fraction(self) -> float:
        """Fraction of tests passed (0.0 without tests)."""
        return sum(self.passed) / len(self.passed) if self.passed else 0.0

    @property
    def all_passed(self) -> bool:
        """True when there was at least one test and every test passed."""
        return bool(self.passed) and all(self.passed)


@dataclass(frozen=True)
class Isolation:
    """Which isolation layers hold on this machine (probed once per process)."""

    namespaces: bool  # network, PID and mount namespaces via `unshare`
    user_namespace: bool  # namespaces obtained through a user namespace (not root)
    readonly_fs: bool  # every mount but the working directory is read-only
    drop_user: bool  # the program runs as an unprivileged user
    per_run_uid: bool  # ... with a user id of its own (else the shared `nobody`, 65534)
    python: str  # interpreter that runs the program


def _runs(cmd: list[str], **kw) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20, env={"PATH": "/usr/bin:/bin"}, **kw).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def isolation() -> Isolation:
    """Probe what this machine permits: `unshare` namespaces, dropping to `nobody`, an interpreter it can run.

    Each candidate configuration (strongest first) is checked by running a probe program under it, which also
    checks that the mounts outside the working directory really are read-only. Raises LengthRLError only when
    no configuration can run Python at all."""
    root = os.geteuid() == 0
    unshare = shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin")
    ns = userns = False
    if unshare:
        if root and _runs([unshare, *_NS_FLAGS, "true"]):
            ns = True
        elif _runs([unshare, "--user", "--map-root-user", *_NS_FLAGS, "true"]):
            ns = userns = True
    python = os.path.realpath(sys.executable)
    drop = per_run = False
    if root:
        for cand in [python, "/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3") or ""]:
            if cand and _runs([cand, "-I", "-c", "pass"], user=NOBODY, group=NOBODY, extra_groups=[]):
                python, drop = cand, True
                per_run = _runs([cand, "-I", "-c", "pass"], user=UID_BASE, group=UID_BASE, extra_groups=[])
                break
    full = Isolation(
        namespaces=ns, user_namespace=userns, readonly_fs=ns, drop_user=drop, per_run_uid=per_run, python=python
    )
    plain = replace(full, namespaces=False, user_namespace=False, readonly_fs=False)
    bare = replace(plain, drop_user=False, per_run_uid=False, python=os.path.realpath(sys.executable))
    errors = []
    for iso in dict.fromkeys([full, plain, bare]):  # strongest first; each is checked by a real run
        verdict = _trial(iso)
        if verdict in ("readonly", "writable"):
            return replace(iso, readonly_fs=iso.readonly_fs and verdict == "readonly")
        errors.append(verdict)
    raise LengthRLError(f"the code sandbox cannot start a Python process on this machine: {errors[-1][-500:]}")


def check_sandbox(iso: Isolation | None = None) -> Isolation:
    """The isolation untrusted code runs under here (`isolation()` by default); LengthRLError when it has no
    namespaces (the program would see this machine's files and reach local sockets) and the user has not set
    LENGTHRL_SANDBOX_WITHOUT_NAMESPACES=1. Code tasks call it when they are built, so a run refuses up front."""
    iso = iso or isolation()
    if not iso.namespaces and os.environ.get(WEAK_ENV) != "1":
        raise LengthRLError(
            "the code sandbox cannot create Linux namespaces here (needs root or unprivileged user namespaces and "
            "util-linux `unshare`), so a program could read this machine's files and reach local sockets; run the "
            f"trainer in a container or VM, or set {WEAK_ENV}=1 to accept the weaker sandbox (docs/security.md)"
        )
    return iso


def _trial(iso: Isolation) -> str:
    """Run a probe program under `iso`: 'readonly' / 'writable' (can it write beside its directory?), or
    the error output when the run fails."""
    probe = f".lengthrl-probe-{uuid.uuid4().hex}"
    prog = (
        "import os\npath = os.path.join(os.path.dirname(os.getcwd()), %r)\n"
        "try:\n    open(path, 'w').close()\n    print('writable')\nexcept OSError:\n    print('readonly')" % probe
    )
    try:
        res = run_program(prog, limits=SandboxLimits(timeout_s=30), iso=iso, _probe=True)
    finally:
        leaked = Path(tempfile.gettempdir()) / probe
        if leaked.exists():
            leaked.unlink()
    out = res.stdout.strip()
    return out if res.status == "ok" and out in ("readonly", "writable") else f"{res.status}: {res.stderr}"


def _alloc_uid() -> int:
    """A user id no other run of this process is using (random, so concurrent trainers rarely collide)."""
    with _uid_lock:
        while True:
            uid = UID_BASE + random.randrange(UID_SPAN)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                for line in (d / "status").read_text().splitlines():
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(d.name))
                        break
            except (OSError, ValueError):
                pass
    return pids


def _kill_uid(uid: int, rounds: int = 100) -> None:
    """SIGKILL every process of the run's own user id, repeatedly (a fork bomb forks while being killed)."""
    for _ in range(rounds):
        pids = _uid_processes(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(
    program: str,
    tests: list[str] | None = None,
    stdin: str = "",
    limits: SandboxLimits | None = None,
    iso: Isolation | None = None,
    _probe: bool = False,
) -> SandboxResult:
    """Run `program` (Python source) in the sandbox.

    With `tests` (a list of Python snippets, typically `assert f(2) == 4`), the program runs in one sandboxed
    process and the tests in another (the judge), which never executes the program: the program's names are
    proxies there, each use a request to the program's process answered with a plain value of a builtin type
    (docs/security.md). `passed[i]` says whether test i ran without an exception.
    Without tests the program runs as a script with `stdin`, and the caller judges `stdout` / `status`.
    Never raises for anything the program does; never runs longer than `limits.timeout_s` (plus clean-up).
    `iso` overrides the probed isolation (`isolation()`), for tests and the probe itself.
    """
    lim = limits or SandboxLimits()
    iso = iso or isolation()
    if not _probe:
        check_sandbox(iso)
    tests = list(tests or [])
    launched: list[_Launched] = []
    own: list[int] = []  # descriptors of this run held here
    files: list = []
    t0 = time.monotonic()
    try:
        life_r, life_w = os.pipe()  # the lifeline: its write end lives only here; when this process dies, the run ends
        own += [life_r, life_w]
        if not tests:
            fin = tempfile.TemporaryFile()
            files.append(fin)
            fin.write(stdin.encode("utf-8", "surrogatepass"))
            fin.flush()
            fin.seek(0)
            prog = _launch("script", program, iso, lim, life_r, {}, stdin=fin)
            launched.append(prog)
            streams = {"out": prog.proc.stdout, "err": prog.proc.stderr}
            return _collect(prog.proc, [prog.proc], streams, lim, 0, t0)
        req_r, req_w = os.pipe()  # judge -> program
        resp_r, resp_w = os.pipe()  # program -> judge
        res_r, res_w = os.pipe()  # judge -> here: the verdicts
        own += [req_r, req_w, resp_r, resp_w, res_r, res_w]
        tf = tempfile.TemporaryFile()  # unlinked: the tests are in no file system
        files.append(tf)
        tf.write(json.dumps(tests).encode("utf-8", "surrogatepass"))
        tf.flush()
        prog = _launch("serve", program, iso, lim, life_r, {"req_fd": req_r, "resp_fd": resp_w})
        launched.append(prog)
        judge = _launch(
            "judge", None, iso, lim, life_r, {"req_fd": req_w, "resp_fd": resp_r, "result_fd": res_w, "tests_fd": tf.fileno()}
        )
        launched.append(judge)
        for fd in (req_r, req_w, resp_r, resp_w, res_w):
            os.close(fd)
            own.remove(fd)
        files.remove(tf)
        tf.close()
        streams = {"out": prog.proc.stdout, "err": prog.proc.stderr, "jerr": judge.proc.stderr,
                   "jout": judge.proc.stdout, "res": res_r}
        return _collect(judge.proc, [prog.proc, judge.proc], streams, lim, len(tests), t0)
    finally:
        for fd in own:
            os.close(fd)  # closing the lifeline ends the runs' inits
        for f in files:
            f.close()
        for run in launched:
            _kill_group(run.proc)
            run.proc.wait()
        for run in launched:
            if run.uid is not None and run.uid != NOBODY:  # the run's own user: every process of it is this run's
                _kill_uid(run.uid)
                with _uid_lock:
                    _uids_in_use.discard(run.uid)
            _remove_tree(run.workdir)


@dataclass
class _Launched:
    proc: subprocess.Popen
    uid: int | None
    workdir: str


def _launch(role: str, program: str | None, iso: Isolation, lim: SandboxLimits, lifeline: int, fds: dict,
            stdin=subprocess.DEVNULL) -> _Launched:
    """Start one sandboxed process (`script`, `serve` or `judge`) in a run directory of its own, under its own
    user id where per-run ids are available; `fds` are passed to it by name."""
    workdir = tempfile.mkdtemp(prefix="lengthrl-sbx-")
    uid = (_alloc_uid() if iso.per_run_uid else NOBODY) if iso.drop_user else None
    try:
        wd = Path(workdir)
        if program is not None:
            (wd / "program.py").write_text(program, encoding="utf-8", errors="surrogatepass")
        shutil.copyfile(_CHILD_SRC, wd / "child.py")
        if iso.drop_user:
            os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)
            for p in wd.iterdir():
                os.chown(p, uid, uid)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        cfg = {
            "tag": run_tag(),  # in every sandbox process's command line: whose run it is
            "role": role,
            "workdir": workdir,
            "readonly_fs": iso.readonly_fs,
            "uid": uid,
            "gid": uid,
            "python": iso.python,
            "env": env,
            "lifeline_fd": lifeline,
            "init_fds": [lifeline],  # closed in the program's process
            "close_in_init": sorted(fds.values()),
            "deadline_s": lim.timeout_s + 2.0,  # the init's own deadline: holds even if this process stops
            "forbid_userns": True,
            "limits": {k: getattr(lim, k) for k in ("cpu_s", "memory_bytes", "file_bytes", "nproc", "nofile", "disk_bytes")},
            **fds,
        }
        prefix = []
        if iso.namespaces:
            prefix = [shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin")]
            prefix += ["--user", "--map-root-user"] if iso.user_namespace else []
            prefix += _NS_FLAGS
        boot_py = os.path.realpath(sys.executable)
        proc = subprocess.Popen(
            [*prefix, boot_py, "-I", "-B", str(wd / "child.py"), "boot", json.dumps(cfg)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(lifeline, *fds.values()),
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
    except BaseException:
        if uid is not None and uid != NOBODY:
            with _uid_lock:
                _uids_in_use.discard(uid)
        _remove_tree(workdir)
        raise
    return _Launched(proc, uid, workdir)


def _remove_tree(path: str) -> None:
    """Remove a run directory whatever the program left in it (a tree too deep for shutil's recursion too)."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        pass
    if os.path.exists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True, env={"PATH": "/usr/bin:/bin"})


def _collect(decider: subprocess.Popen, procs: list[subprocess.Popen], streams: dict, lim: SandboxLimits,
             n_tests: int, t0: float) -> SandboxResult:
    """Read the streams until the deciding process (the judge, or the script) ends, the deadline passes or
    the program's output (`out` + `err`) overflows. The status comes from the program's process."""
    sel = selectors.DefaultSelector()
    bufs = {k: bytearray() for k in streams}
    for key, f in streams.items():
        sel.register(f, selectors.EVENT_READ, key)
    deadline = t0 + lim.timeout_s
    status = None
    exited_at = None
    cap = lim.max_output_bytes
    while sel.get_map():
        now = time.monotonic()
        if now >= deadline:
            status = "timeout"
            break
        if exited_at is None and decider.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.5:  # leftovers hold the pipes open: stop waiting
            break
        for key, _ in sel.select(timeout=min(0.1, deadline - now)):
            fd = key.fileobj if isinstance(key.fileobj, int) else key.fileobj.fileno()
            chunk = os.read(fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            if key.data in ("jout", "jerr") and len(bufs[key.data]) > cap:
                continue  # the judge's own output: kept up to the cap, the rest read and dropped
            bufs[key.data] += chunk
        if len(bufs["out"]) + len(bufs["err"]) > cap:
            status = "output_limit"
            break
    sel.close()
    main = procs[0]
    if status is None and main is not decider:  # the judge is done: the program's process ends on its own
        try:
            main.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        _kill_group(p)
    rc = main.wait()
    lines = bytes(bufs.get("res", b"")).split(b"\n")
    passed = [ln == b"P" for ln in lines if ln in (b"P", b"F")][:n_tests]
    passed += [False] * (n_tests - len(passed))
    if status is None:
        status = "ok" if rc == 0 else ("signal" if rc < 0 or rc >= 128 else "error")
    stderr = bytes(bufs["err"][:cap]).decode("utf-8", "replace")
    if bufs.get("jerr"):
        stderr += "\n[tests]\n" + bytes(bufs["jerr"][:cap]).decode("utf-8", "replace")
    return SandboxResult(
        status=status,
        passed=passed,
        returncode=rc,
        stdout=bytes(bufs["out"][:cap]).decode("utf-8", "replace"),
        stderr=stderr,
        duration_s=time.monotonic() - t0,
    )


def code_reward(program: str, tests: list[str], mode: str = "fraction", limits: SandboxLimits | None = None) -> float:
    """Reward of a program on assert-style tests: `fraction` of tests passed, or `all` (1.0 only if all pass).

    A run that times out or exceeds the output cap gets 0.0 whatever it printed.
    """
    if mode not in ("fraction", "all"):
        raise ConfigError(f"code reward mode must be 'fraction' or 'all', got {mode!r}")
    if not tests:
        raise ConfigError("code_reward needs at least one test; got an empty `tests` list")
    res = run_program(program, tests, limits=limits)
    if res.status in ("timeout", "output_limit"):
        return 0.0
    return res.fraction if mode == "fraction" else float(res.all_passed)


def _normalise_output(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def run_io_tests(
    program: str, cases: list[tuple[str, str]], limits: SandboxLimits | None = None
) -> list[bool]:
    """Run `program` once per (stdin, expected stdout) case; a case passes when the run exits 0 and its
    output equals the expected one (trailing spaces and blank lines ignored). The verdict is made here, from
    the output (docs/security.md)."""
    if not cases:
        raise ConfigError("run_io_tests needs at least one (stdin, expected stdout) case")
    out = []
    for stdin, expected in cases:
        res = run_program(program, stdin=stdin, limits=limits)
        out.append(res.status == "ok" and _normalise_output(res.stdout) == _normalise_output(expected))
    return out
