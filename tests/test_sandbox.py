"""The code sandbox: rewards from tests, and hostile programs that must end with reward 0 within the limits
and leave the machine as it was (no stray processes, no files outside the run's directory)."""

import json
import os
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sandboxkit import namespaces_or_refusal, private_tmpdir, run_dirs, sandbox_processes

from lengthrl.errors import ConfigError
from lengthrl.verifiers import SandboxLimits, code_reward, isolation, run_program
from lengthrl.errors import LengthRLError
from lengthrl.verifiers.sandbox import UID_BASE, WEAK_ENV

FAST = SandboxLimits(timeout_s=1.5, cpu_s=1, memory_bytes=512 << 20, max_output_bytes=64 << 10)


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch, tmp_path_factory):
    """Run directories (and canaries) in a directory of this test's own, not in the shared $TMPDIR."""
    yield from private_tmpdir(monkeypatch, tmp_path_factory, "lengthrl-sandbox-test-", set_env=False)


@pytest.fixture(autouse=True)
def namespaces(request, monkeypatch):
    """Without namespaces only the tests marked weak_sandbox run; the others check the refusal and skip."""
    if not request.node.get_closest_marker("weak_sandbox"):
        namespaces_or_refusal(monkeypatch)


@pytest.fixture
def unharmed():
    """Checks after the test: no sandbox process left, every run directory removed, the canary path absent."""
    before_procs, before_dirs = sandbox_processes(), run_dirs()
    canary = Path(tempfile.gettempdir()) / f"lengthrl-canary-{uuid.uuid4().hex}"
    yield canary
    time.sleep(0.2)
    assert sandbox_processes() - before_procs == set()
    assert run_dirs() - before_dirs == set()
    assert not canary.exists()


def test_fraction_and_all_pass_rewards():
    prog = "def double(x):\n    return 2 * x\n"
    tests = ["assert double(2) == 4", "assert double(3) == 7", "assert double(0) == 0"]
    res = run_program(prog, tests)
    assert res.status == "ok" and res.passed == [True, False, True]
    assert code_reward(prog, tests) == pytest.approx(2 / 3)
    assert code_reward(prog, tests, mode="all") == 0.0
    assert code_reward(prog, tests[:1] + tests[2:], mode="all") == 1.0


def test_stdin_stdout_mode():
    res = run_program("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2 3\n")
    assert (res.status, res.stdout, res.returncode) == ("ok", "6\n", 0)
    bad = run_program("raise SystemExit(3)")
    assert bad.status == "error" and bad.returncode == 3


def test_program_error_fails_every_test():
    res = run_program("def f(:\n  pass", ["assert True", "assert True"])
    assert res.passed == [False, False] and "SyntaxError" in res.stderr


def test_a_test_that_exits_only_fails_itself_and_os_exit_fails_the_rest():
    res = run_program("x = 1", ["raise SystemExit(0)", "assert x == 1", "import os; os._exit(0)", "assert True"])
    assert res.passed == [False, True, False, False]


@pytest.mark.weak_sandbox
def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ConfigError, match="nproc"):
        SandboxLimits(nproc=-1)
    with pytest.raises(ConfigError, match="mode"):
        code_reward("x=1", ["assert True"], mode="some")
    with pytest.raises(ConfigError, match="tests"):
        code_reward("x=1", [])


# Each hostile program sets OK = 1 only if its attack worked; the single test asserts OK == 1.
HOSTILE = {
    "infinite_loop": "while True:\n    pass\nOK = 1",
    "sleep_past_limit": "import time\ntime.sleep(60)\nOK = 1",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "fork_bomb_escaping_group": (
        "import os, time\nfor _ in range(16):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        while True:\n            try: os.fork()\n            except OSError: pass\ntime.sleep(60)\nOK = 1"
    ),
    "huge_allocation": "x = bytearray(16 << 30)\nOK = 1",
    "growing_allocation": "a = []\nwhile True:\n    a.append(bytearray(64 << 20))",
    "huge_stdout": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
    "huge_stderr_raw_fd": "import os\nwhile True:\n    os.write(2, b'y' * 65536)",
    "huge_file": "open('big.bin', 'wb').write(b'0' * (256 << 20))\nOK = 1",
    "write_outside_tmp": "open(CANARY, 'w').write('x')\nOK = 1",
    "write_parent_dir": "open('../' + CANARY.rsplit('/', 1)[1], 'w').write('x')\nOK = 1",
    "write_dev_shm": "open('/dev/shm/' + CANARY.rsplit('/', 1)[1], 'w').write('x')\nOK = 1",
    "socket_connect": "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\nOK = 1",
    "socket_listen": "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 0))\ns.listen()\nOK = 1",
    "env_secrets": (
        "import os\nenv = dict(os.environ)\nraw = open('/proc/self/environ', 'rb').read()\n"
        "OK = int(any('SECRET' in k for k in env) or b'hunter2' in raw)"
    ),
    "kill_parent": (
        "import os, signal\nppid = os.getppid()\nif ppid == 0:\n    raise SystemExit('parent not visible')\n"
        "os.kill(ppid, signal.SIGKILL)\nOK = 1"
    ),
    "kill_test_process": "import os, signal\nos.kill(TEST_PID, signal.SIGKILL)\nOK = 1",
    "kill_everything": "import os, signal\nos.kill(-1, signal.SIGKILL)\nOK = 1",
    "late_daemon": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(0.8)\n"
        "        open(CANARY, 'w').write('late')\n    os._exit(0)\nOK = 0"
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_gets_zero_and_is_contained(name, unharmed, monkeypatch):
    iso = isolation()
    if name.startswith("kill_") and not (iso.namespaces or iso.drop_user):
        pytest.skip("same user and no PID namespace: signals to the caller cannot be stopped (docs/security.md)")
    monkeypatch.setenv("LENGTHRL_SECRET_TOKEN", "hunter2")
    prog = f"CANARY = {str(unharmed)!r}\nTEST_PID = {os.getpid()}\n" + HOSTILE[name]
    t0 = time.monotonic()
    res = run_program(prog, ["assert OK == 1"], limits=FAST)
    elapsed = time.monotonic() - t0
    assert res.passed == [False], (res.status, res.stderr[-500:])
    assert res.fraction == 0.0
    assert elapsed < FAST.timeout_s + 3.0  # clean-up margin on a loaded 2-core machine
    assert len(res.stdout) + len(res.stderr) <= 2 * FAST.max_output_bytes
    if name == "late_daemon":
        time.sleep(1.0)  # past the daemon's wake-up: it must have died with the run
    if name.startswith("huge_std"):
        assert res.status == "output_limit"
    if name in ("infinite_loop", "sleep_past_limit"):
        assert res.status in ("timeout", "signal", "error")


def test_isolation_layers_that_hold_here():
    iso = isolation()
    if os.geteuid() == 0:
        assert iso.drop_user, "as root the program must run as nobody (RLIMIT_NPROC does not bind root)"
    res = run_program(
        "import os\nprint(os.getuid(), sorted(os.environ))\nimport socket\n"
        "try:\n    socket.socket()\n    print('socket-allowed')\nexcept PermissionError:\n    print('socket-blocked')"
    )
    uid, env = res.stdout.split(" ", 1)
    assert env.startswith("['HOME', 'LANG', 'PATH', 'TMPDIR']")
    assert "socket-blocked" in res.stdout  # the audit hook holds with or without namespaces
    if iso.drop_user:
        assert int(uid) >= UID_BASE if iso.per_run_uid else int(uid) == 65534


# Without namespaces (a machine that forbids them) the other layers must still hold.
FALLBACK_CASES = ["fork_bomb_escaping_group", "late_daemon", "env_secrets", "socket_connect", "huge_stdout",
                  "huge_allocation", "kill_test_process"]


@pytest.mark.weak_sandbox
@pytest.mark.parametrize("name", FALLBACK_CASES)
def test_fallback_without_namespaces(name, unharmed, monkeypatch):
    iso = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    if not iso.per_run_uid:
        pytest.skip("needs root to run the program under a user id of its own")
    monkeypatch.setenv("LENGTHRL_SECRET_TOKEN", "hunter2")
    monkeypatch.setenv(WEAK_ENV, "1")
    prog = f"CANARY = {str(unharmed)!r}\nTEST_PID = {os.getpid()}\n" + HOSTILE[name]
    t0 = time.monotonic()
    res = run_program(prog, ["assert OK == 1"], limits=FAST, iso=iso)
    assert res.passed == [False], (res.status, res.stderr[-500:])
    assert time.monotonic() - t0 < FAST.timeout_s + 3.0  # clean-up margin on a loaded 2-core machine
    if name == "late_daemon":
        time.sleep(1.0)  # the daemon left the process group; killing the run's user id got it


def test_namespaces_stop_network_even_below_python():
    if not isolation().namespaces:
        pytest.skip("no network namespace on this machine (unshare not permitted); docs/security.md")
    prog = (
        "import ctypes, struct\nlibc = ctypes.CDLL(None, use_errno=True)\nfd = libc.socket(2, 1, 0)\n"
        "addr = struct.pack('=H', 2) + struct.pack('!H4s8x', 53, bytes([8, 8, 8, 8]))\nrc = libc.connect(fd, addr, 16)\n"
        "print(rc, ctypes.get_errno())\nprint(open('/proc/net/dev').read().count(':'))\n"
        "import os\nprint(os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    )
    res = run_program(prog)
    lines = res.stdout.split("\n")
    rc, errno_ = map(int, lines[0].split())
    assert rc == -1 and errno_ == 101  # ENETUNREACH: a C-level socket reaches nothing
    assert int(lines[1]) == 1  # only the loopback interface
    pid, visible = lines[2].split(" ", 1)
    assert (int(pid), visible) == (2, "[1, 2]")  # own PID namespace: only the run's init (PID 1) and itself


def test_read_only_outside_the_working_directory(unharmed):
    if not isolation().readonly_fs:
        pytest.skip("no mount namespace on this machine; writing is limited by the unprivileged user only")
    prog = (
        "import os\nopen('inside.txt', 'w').write('ok')\nbad = []\n"
        f"for p in [{str(unharmed)!r}, '/var/tmp/x', '/dev/shm/x', os.path.expanduser('~/../x'), '/etc/x']:\n"
        "    try:\n        open(p, 'w').write('x')\n        bad.append(p)\n    except OSError:\n        pass\n"
        "print(open('inside.txt').read(), bad)"
    )
    res = run_program(prog)
    assert res.stdout.strip() == "ok []"


# ---------------------------------------------------------------- the program's own file system (private root)

needs_private_root = pytest.mark.skipif(
    not isolation().readonly_fs, reason="no mount namespace on this machine: no private root (docs/security.md)"
)


def _io_cheat_task(tmp_path):
    """A code task with stdin/stdout cases whose data file (train.jsonl, world-readable) is in `tmp_path`."""
    from lengthrl.tasks.base import Sample
    from lengthrl.tasks.code_task import CodeTask

    cases = [[f"{a} {b}\n", f"{a * b + 7}\n"] for a, b in [(3, 4), (11, 13), (5, 9)]]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": "multiply, add 7", "io_tests": cases}) for _ in range(2)))
    os.chmod(tmp_path, 0o755)
    os.chmod(data, 0o644)  # world-readable, as data files usually are
    task = CodeTask([Sample(id="m", prompt="p", answer="", meta={"io_tests": cases})], limits=FAST)
    return task, task.samples()[0]


def _data_cheat(top: str) -> str:
    """The red-team program: walk the file system from `top`, find the data row holding this stdin, print its
    stored output."""
    return (
        "import os, sys, json\nmine = sys.stdin.read()\n"
        f"for root, dirs, files in os.walk({top!r}):\n"  # the system directories hold no data: skipped for speed
        "    dirs[:] = [d for d in dirs if root != '/' or d not in ('proc', 'sys', 'usr', 'bin', 'sbin', 'lib', 'lib32',"
        " 'lib64', 'libx32', 'dev')]\n"
        "    for f in files:\n"
        "        try:\n            text = open(os.path.join(root, f), errors='ignore').read(1 << 20)\n"
        "        except OSError:\n            continue\n"
        "        for line in text.splitlines():\n"
        "            try:\n                row = json.loads(line)\n            except Exception:\n                continue\n"
        "            for i, o in (row.get('io_tests') or []) if isinstance(row, dict) else []:\n"
        "                if i == mine:\n                    print(o, end='')\n                    raise SystemExit(0)\n"
    )


@needs_private_root
def test_stdin_stdout_cheat_that_reads_the_training_data_gets_zero(host_dir, unharmed):
    """The cheat walks the whole file system ('/', the system directories aside): it finishes its walk (not a
    timeout) without finding the data file."""
    task, s = _io_cheat_task(host_dir)
    assert task.score(s, "```python\na, b = map(int, input().split())\nprint(a * b + 7)\n```").reward == 1.0
    assert task.score(s, f"```python\n{_data_cheat('/')}```").reward == 0.0
    res = run_program(_data_cheat("/"), stdin="3 4\n", limits=FAST)
    assert (res.status, res.stdout) == ("ok", ""), (res.status, res.stderr[-300:])


@pytest.mark.weak_sandbox
def test_without_a_private_root_the_data_cheat_works(host_dir, monkeypatch):
    """The limit docs/security.md states for the no-namespace opt-in, and the proof that the cheat above is a
    working one: with the host's files visible it finds the data file and gets reward 1."""
    weak = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    if not weak.drop_user:
        pytest.skip("needs root to run the program as an unprivileged user")
    monkeypatch.setattr("lengthrl.verifiers.sandbox.isolation", lambda: weak)
    monkeypatch.setenv(WEAK_ENV, "1")
    task, s = _io_cheat_task(host_dir)
    assert task.score(s, f"```python\n{_data_cheat(str(host_dir))}```").reward == 1.0


@needs_private_root
def test_the_program_sees_no_host_files(host_dir):
    secret = host_dir / "secret.txt"
    secret.write_text("hunter2")
    os.chmod(secret, 0o644)
    here = Path(__file__).resolve().parent.parent
    paths = [str(secret), str(here), str(here / "pyproject.toml"), os.path.expanduser("~"), "/tmp", "/etc/passwd",
             "/home", "/work", "/run", "/var", "/root", os.path.realpath(os.sys.executable)]
    prog = f"import os\nprint(sorted(os.listdir('/')))\nprint([p for p in {paths!r} if os.path.exists(p)])"
    res = run_program(prog, limits=FAST)
    top, seen = res.stdout.strip().split("\n")
    assert seen == "[]", seen
    assert set(eval(top)) <= {"bin", "box", "dev", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "usr"}


def _host_sockets_probe(host_dir, iso=None):
    """Listen on a Unix socket file in `host_dir` (world-reachable), an abstract Unix socket and TCP on
    127.0.0.1, then run a program that connects to each through C (ctypes) and through a child python3 (no
    audit hook there). Returns the program's output lines and what the listeners received."""
    import socket
    import threading

    path = str(host_dir / "host.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    os.chmod(path, 0o777)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0lengthrl-test-" + uuid.uuid4().hex)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    got = []
    for s in (srv, abstract, tcp):
        s.listen()
        threading.Thread(target=_accept_all, args=(s, got), daemon=True).start()
    child = (
        "import socket, sys\nfor a in (sys.argv[1], ('127.0.0.1', int(sys.argv[2]))):\n"
        "    s = socket.socket(socket.AF_UNIX if isinstance(a, str) else socket.AF_INET)\n"
        "    s.settimeout(2)\n    try:\n        s.connect(a)\n        s.sendall(b'child')\n"
        "        print('child connected', s.recv(2).decode())\n    except OSError as e:\n        print('child refused')"
    )
    prog = (
        "import ctypes, struct, subprocess, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"for p in [{path!r}, {abstract.getsockname()!r}]:\n"
        "    fd = libc.socket(1, 1, 0)\n    raw = p.encode() if isinstance(p, str) else p\n"
        "    addr = struct.pack('=H', 1) + raw + b'\\0' * (108 - len(raw))\n"
        "    rc = libc.connect(fd, addr, 2 + len(raw) + isinstance(p, str))\n"  # an abstract name is exact
        "    print('ctypes', rc, libc.write(fd, b'ctypes', 6) if rc == 0 else '')\n"
        f"print(subprocess.run(['/usr/bin/python3', '-I', '-c', {child!r}, {path!r}, '{tcp.getsockname()[1]}'],"
        " capture_output=True, text=True).stdout, end='')"
    )
    try:
        res = run_program(prog, limits=FAST, iso=iso)
        time.sleep(0.3)
    finally:
        for s in (srv, abstract, tcp):
            s.close()
    return [ln.strip() for ln in res.stdout.splitlines()], sorted(got), res.stderr


def _accept_all(srv, got):
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                got.append(conn.recv(16))
                conn.sendall(b"ok")
            except OSError:
                pass


@pytest.fixture
def host_dir(private_tmp):
    """A directory of the host that any user can reach (as data directories usually are); pytest's own
    temporary directories are not (their parent is private to root), which would hide files from the
    unprivileged program even without a private root."""
    d = Path(tempfile.mkdtemp(dir=private_tmp))
    os.chmod(d, 0o755)
    return d


@needs_private_root
def test_host_unix_sockets_are_unreachable(host_dir):
    """A socket file on the host is not in the program's file system, for C (ctypes) or a child python3;
    abstract sockets and TCP on 127.0.0.1 are scoped by the network namespace."""
    lines, got, err = _host_sockets_probe(host_dir)
    assert lines == ["ctypes -1", "ctypes -1", "child refused", "child refused"], (lines, err)
    assert got == []


@pytest.mark.weak_sandbox
def test_without_namespaces_host_sockets_are_reachable(host_dir, monkeypatch):
    """The limit docs/security.md states for the no-namespace opt-in (and the proof that the probe above can
    connect): the socket file, the abstract socket and, from a child interpreter, TCP on 127.0.0.1."""
    weak = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    if not weak.drop_user:
        pytest.skip("needs root to run the program as an unprivileged user")
    monkeypatch.setenv(WEAK_ENV, "1")
    lines, got, err = _host_sockets_probe(host_dir, iso=weak)
    assert lines == ["ctypes 0 6", "ctypes 0 6", "child connected ok", "child connected ok"], (lines, err)
    assert got == [b"child", b"child", b"ctypes", b"ctypes"]


@needs_private_root
@pytest.mark.parametrize(
    "prog",
    [
        "f = open('big', 'wb')\nfor _ in range(400):\n    f.write(b'0' * (1 << 20))\nOK = 1",  # 400 MB: disk quota
        # 50 files of 8 MiB, each under RLIMIT_FSIZE (16 MiB by default): only the run directory's size stops them
        "for i in range(50):\n    open(f'f{i}', 'wb').write(b'0' * (8 << 20))\nOK = 1",
        "for i in range(600000):\n    open(f'f{i}', 'w').close()\nOK = 1",  # many files: inode cap
        "import os\nfor _ in range(5000):\n    os.mkdir('d')\n    os.chdir('d')\nOK = 1",  # a deep tree
    ],
    ids=["disk_quota", "many_files_under_the_file_limit", "many_files", "deep_tree"],
)
def test_disk_is_bounded_and_needs_no_clean_up(prog, unharmed):
    t0 = time.monotonic()
    lim = replace(FAST, file_bytes=(16 << 20) if "range(50)" in prog else 1 << 30, disk_bytes=32 << 20)
    res = run_program(prog, ["assert OK == 1"], limits=lim)
    assert res.passed == [False], res.stderr[-300:]
    assert time.monotonic() - t0 < FAST.timeout_s + 3.0
    assert "OSError" in res.stderr or "No space" in res.stderr or res.status in ("timeout", "signal", "error")


@pytest.mark.weak_sandbox
def test_without_namespaces_untrusted_code_needs_an_explicit_opt_in(monkeypatch, tmp_path):
    weak = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    monkeypatch.delenv(WEAK_ENV, raising=False)
    with pytest.raises(LengthRLError, match=WEAK_ENV):
        run_program("print(1)", iso=weak)
    monkeypatch.setenv(WEAK_ENV, "1")
    assert run_program("print(1)", iso=weak, limits=FAST).stdout == "1\n"


@pytest.mark.weak_sandbox
def test_a_code_task_refuses_up_front_without_namespaces(monkeypatch):
    """Without namespaces and without the opt-in, building a code task fails (a training run then stops with
    one line before its first step, `tests/test_reliability_errors.py`) instead of every reward being 0."""
    from lengthrl.tasks.base import Sample
    from lengthrl.tasks.code_task import CodeTask

    weak = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    monkeypatch.setattr("lengthrl.verifiers.sandbox.isolation", lambda: weak)
    monkeypatch.delenv(WEAK_ENV, raising=False)
    samples = [Sample(id="s", prompt="p", answer="", meta={"tests": ["assert True"]})]
    with pytest.raises(LengthRLError, match=f"cannot create Linux namespaces.*{WEAK_ENV}=1"):
        CodeTask(samples, limits=FAST)
    monkeypatch.setenv(WEAK_ENV, "1")
    task = CodeTask(samples, limits=FAST)
    assert task.score(task.samples()[0], "```python\nx = 1\n```").reward == 1.0


@pytest.mark.weak_sandbox
def test_weak_sandbox_clean_up_survives_a_deep_tree(monkeypatch):
    """Without a private root the program writes in the host run directory: a 4000-deep tree must not make
    the clean-up raise RecursionError or leave the directory."""
    weak = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    monkeypatch.setenv(WEAK_ENV, "1")
    before = run_dirs()
    prog = "import os\nfor _ in range(4000):\n    os.mkdir('d')\n    os.chdir('d')\nprint('deep')"
    res = run_program(prog, iso=weak, limits=replace(FAST, timeout_s=20, cpu_s=10))
    assert res.stdout == "deep\n", res.stderr[-300:]
    assert run_dirs() - before == set()
