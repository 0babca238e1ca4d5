"""Every sandboxed process dies with its run, whatever the trainer does (exits, is killed, is stopped), and
a run cannot grow resources through a nested user namespace. The trainer here is a separate Python process
that this test kills or stops while its run is in flight."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sandboxkit import private_tmpdir, run_dirs, sandbox_processes

from lengthrl.tasks.base import Sample
from lengthrl.tasks.code_task import CodeTask
from lengthrl.verifiers import SandboxLimits, isolation, run_program
from lengthrl.verifiers.sandbox import WEAK_ENV

SRC = str(Path(__file__).resolve().parent.parent / "src")
LIM = SandboxLimits(timeout_s=20, cpu_s=10, memory_bytes=512 << 20, max_output_bytes=64 << 10)

# daemons that leave the process group and sleep far past any deadline
DAEMONS = (
    "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(300)\n"
    "        os._exit(0)\nprint('started', flush=True)\ntime.sleep(300)\n"
)

TRAINER = textwrap.dedent(
    """
    import sys
    from dataclasses import replace
    from lengthrl.verifiers.sandbox import SandboxLimits, isolation, run_program
    mode, timeout, assert_mode = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
    iso = isolation()
    if mode != "ns":
        iso = replace(iso, namespaces=False, user_namespace=False, readonly_fs=False, per_run_uid=mode == "weak-uid")
    prog = sys.stdin.read()
    print("running", flush=True)
    run_program(prog, ["assert True"] if assert_mode else None, limits=SandboxLimits(timeout_s=timeout, cpu_s=300), iso=iso)
    """
)


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch, tmp_path_factory):
    """Run directories in a directory of this test's own (other sandbox users share $TMPDIR)."""
    yield from private_tmpdir(monkeypatch, tmp_path_factory, "lengthrl-lifetime-test-", set_env=True)


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def _modes():
    iso = isolation()
    modes = []
    if iso.namespaces:
        modes.append("ns")
    if iso.drop_user:
        modes.append("weak-nobody")
    if iso.per_run_uid:
        modes.append("weak-uid")
    return modes


def _start_trainer(mode: str, timeout: float, assert_mode: bool, prog: str = DAEMONS) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC, **{WEAK_ENV: "1"})
    p = subprocess.Popen([sys.executable, "-c", TRAINER, mode, str(timeout), "1" if assert_mode else "0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    p.stdin.write(prog)
    p.stdin.close()
    assert p.stdout.readline().strip() == "running"
    return p


@pytest.mark.parametrize("assert_mode", [False, True], ids=["script", "assert"])
@pytest.mark.parametrize("mode", _modes())
def test_killing_the_trainer_ends_its_run(mode, assert_mode):
    trainer = _start_trainer(mode, timeout=120, assert_mode=assert_mode)
    try:  # the program and its 3 daemons are up
        assert _wait(lambda: len(sandbox_processes(trainer.pid)) >= 4, 30), sandbox_processes(trainer.pid)
    finally:
        trainer.kill()
        trainer.wait()
    assert _wait(lambda: not sandbox_processes(trainer.pid), 15), sandbox_processes(trainer.pid)
    assert _wait(lambda: not run_dirs(), 10), run_dirs()


@pytest.mark.parametrize("mode", [m for m in _modes() if m != "weak-uid"])
def test_a_stopped_trainer_cannot_keep_its_run_alive(mode):
    """The run's init has its own deadline (timeout_s + 2 s), so a frozen trainer does not extend a run."""
    trainer = _start_trainer(mode, timeout=3, assert_mode=False)
    try:
        assert _wait(lambda: len(sandbox_processes(trainer.pid)) >= 4, 30)
        trainer.send_signal(signal.SIGSTOP)
        gone = _wait(lambda: not sandbox_processes(trainer.pid), 20)
        left = sandbox_processes(trainer.pid)
    finally:
        trainer.kill()
        trainer.wait()
    assert gone, left
    assert _wait(lambda: not run_dirs(), 10), run_dirs()


@pytest.mark.parametrize("mode", _modes())
def test_daemons_die_with_the_verdict(mode, monkeypatch):
    """setsid() daemons die when the run ends, also as the shared `nobody` without a PID namespace (the run's
    init is a child subreaper and kills what comes back to it)."""
    iso = isolation()
    if mode != "ns":
        iso = replace(iso, namespaces=False, user_namespace=False, readonly_fs=False, per_run_uid=mode == "weak-uid")
    monkeypatch.setenv(WEAK_ENV, "1")
    prog = DAEMONS.rsplit("time.sleep(300)", 1)[0]  # the main program ends at once; its daemons sleep
    res = run_program(prog, limits=LIM, iso=iso)
    assert res.stdout == "started\n", res.stderr[-500:]
    assert _wait(lambda: not sandbox_processes(), 5), sandbox_processes()


NESTED_USERNS = (
    "import ctypes, os, subprocess\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "print('unshare', libc.unshare(0x10000000), ctypes.get_errno())\n"  # CLONE_NEWUSER
    "print('unshare+mount', libc.unshare(0x10000000 | 0x00020000), ctypes.get_errno())\n"  # | CLONE_NEWNS
    "r = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',"
    " 'mount -t tmpfs none /box && echo mounted'], capture_output=True, text=True)\n"
    "print('tool', r.returncode, r.stdout.strip())\n"
    "print(subprocess.run(['/bin/echo', 'children-still-work'], capture_output=True, text=True).stdout.strip())\n"
    "pid = os.fork()\nif pid == 0:\n    os._exit(7)\nprint('fork', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
)


@pytest.mark.parametrize("mode", _modes())
def test_nested_user_namespaces_are_refused(mode, monkeypatch):
    """A nested user namespace would give the program mount rights (a tmpfs holds memory outside RLIMIT_AS):
    seccomp refuses CLONE_NEWUSER in unshare and clone; fork and subprocesses still work."""
    iso = isolation()
    if mode != "ns":
        iso = replace(iso, namespaces=False, user_namespace=False, readonly_fs=False, per_run_uid=mode == "weak-uid")
    monkeypatch.setenv(WEAK_ENV, "1")
    res = run_program(NESTED_USERNS, limits=LIM, iso=iso)
    lines = res.stdout.splitlines()
    assert lines[0] == "unshare -1 1" and lines[1] == "unshare+mount -1 1", res.stdout + res.stderr[-500:]
    assert lines[2].startswith("tool ") and "mounted" not in lines[2] and not lines[2].startswith("tool 0")
    assert lines[3:] == ["children-still-work", "fork 7"]


MEMORY_OUTSIDE_RLIMIT_AS = (
    "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nheld = 0\n"
    "try:\n    for i in range(40):\n        fd = os.memfd_create('x')\n        os.write(fd, bytes(16 << 20))\n"
    "        held += 16\nexcept OSError as e:\n    print('memfd', e.errno)\n"
    "print('shmget', libc.shmget(0, 1 << 20, 0o1000 | 0o600), ctypes.get_errno())\n"  # IPC_PRIVATE, IPC_CREAT
    "print('held', held)\n"
)


@pytest.mark.parametrize("mode", _modes())
def test_memory_that_rlimit_as_does_not_count_is_refused(mode, monkeypatch):
    """memfd pages and System V segments need not be mapped, so RLIMIT_AS does not bound them (40 memfds of
    16 MiB = 640 MiB under a 512 MiB limit): seccomp refuses memfd_create and shmget."""
    iso = isolation()
    if mode != "ns":
        iso = replace(iso, namespaces=False, user_namespace=False, readonly_fs=False, per_run_uid=mode == "weak-uid")
    monkeypatch.setenv(WEAK_ENV, "1")
    res = run_program(MEMORY_OUTSIDE_RLIMIT_AS, limits=LIM, iso=iso)
    assert res.stdout.splitlines() == ["memfd 1", "shmget -1 1", "held 0"], res.stdout + res.stderr[-500:]


@pytest.mark.parametrize("mode,assert_mode", [(m, a) for m, a in [("ns", False), ("ns", True), ("weak-uid", True)]
                                               if m in _modes()])
def test_deep_tree_through_code_task_score(mode, assert_mode, monkeypatch):
    """A 4000-deep directory tree neither raises out of CodeTask.score nor leaves the run directory."""
    iso = isolation()
    if mode != "ns":
        iso = replace(iso, namespaces=False, user_namespace=False, readonly_fs=False, per_run_uid=mode == "weak-uid")
    monkeypatch.setenv(WEAK_ENV, "1")
    monkeypatch.setattr("lengthrl.verifiers.sandbox.isolation", lambda: iso)
    before = run_dirs()
    deep = "import os\nfor _ in range(4000):\n    os.mkdir('d')\n    os.chdir('d')\nprint('deep')\n"
    prog = deep + "def f(x):\n    return x\n"
    meta = {"tests": ["assert f(1) == 1"]} if assert_mode else {"io_tests": [["", "deep\n"]]}
    task = CodeTask([Sample(id="s", prompt="p", answer="", meta=meta)], limits=replace(LIM, disk_bytes=64 << 20))
    score = task.score(task.samples()[0], f"```python\n{prog}```")
    assert score.reward == 1.0
    assert run_dirs() - before == set()


RAW_SYSCALLS = r'''
import ctypes, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
X86 = os.uname().machine == "x86_64"
NR = {"clone": 56, "clone3": 435, "memfd_secret": 447, "getpid": 39} if X86 else \
     {"clone": 220, "clone3": 435, "memfd_secret": 447, "getpid": 172}
def sc(*a):
    ctypes.set_errno(0)
    return libc.syscall(*[ctypes.c_long(x) for x in a]), ctypes.get_errno()
r, e = sc(NR["clone"], 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD), not through unshare()
if r == 0:
    os._exit(0)  # the child of a clone that should have been refused
print("clone", r, e)
args = ctypes.create_string_buffer((0x10000000).to_bytes(8, "little") + bytes(80))  # struct clone_args
r, e = sc(NR["clone3"], ctypes.addressof(args), 88)
if r == 0:
    os._exit(0)
print("clone3", r, e)
print("memfd_secret", *sc(NR["memfd_secret"], 0))
print("getpid", sc(NR["getpid"])[0] == os.getpid())
if X86:
    print("x32", *sc(0x40000000 + 39))  # getpid through the x32 ABI
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20 (i386 getpid); int 0x80; ret
    print("i386", ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))())
'''


@pytest.mark.parametrize("mode", _modes())
def test_seccomp_refuses_raw_clone_clone3_and_other_abis(mode, monkeypatch):
    """The filter reads the syscall, not the library call: clone(CLONE_NEWUSER) by number is refused (EPERM),
    clone3 answers ENOSYS (its flags are in memory the filter cannot read), memfd_secret is refused, and so is
    every syscall of another ABI (x32 getpid, i386 getpid through int 0x80: on the host they return ENOSYS and
    the pid); an ordinary syscall by number works."""
    iso = isolation()
    if mode != "ns":
        iso = replace(iso, namespaces=False, user_namespace=False, readonly_fs=False, per_run_uid=mode == "weak-uid")
    monkeypatch.setenv(WEAK_ENV, "1")
    res = run_program(RAW_SYSCALLS, limits=LIM, iso=iso)
    want = ["clone -1 1", "clone3 -1 38", "memfd_secret -1 1", "getpid True"]
    if os.uname().machine == "x86_64":
        want += ["x32 -1 1", "i386 -1"]
    assert res.stdout.splitlines() == want, res.stdout + res.stderr[-500:]
