"""The child side of the code sandbox (standard library only; copied into each run's working directory).

Two phases, selected by argv[1]:

  boot <config-json>   runs first, as the launching user, inside the new namespaces when there are any:
                       builds the private root (mount namespace only), then forks. The forked process sets
                       the resource limits, forbids new user namespaces (seccomp), drops to the unprivileged
                       user and execs the `run` phase with a fresh interpreter (`python -I -B`). The boot
                       process stays as the run's init: it reaps orphans (it is PID 1 of the PID namespace, or
                       a child subreaper without one) and ends the run (every process of it) when the program
                       ends, when its deadline passes, or when the trainer goes away (the lifeline pipe closes).
  run <config-json>    installs an audit hook that refuses sockets, then plays its role:
                       `script`  executes `program.py` as a script (stdin/stdout mode);
                       `serve`   executes `program.py`, then answers the judge's requests (call a function,
                                 read an attribute, ...) with values serialised to plain, typed JSON;
                       `judge`   runs each test (read from an unlinked file: in no file system) in an
                                 interpreter that never executes the program: the program's names are proxies whose calls go to the `serve`
                                 process and come back as plain values of builtin types, compared here with
                                 the builtin `==`. The judge writes one line per test ("P" / "F") to the
                                 result descriptor, which only it holds.

The parent (`lengthrl.verifiers.sandbox`) enforces the wall-clock limit, the output cap and the clean-up.
"""

import json
import os
import sys

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
BOX = "/box"  # the run directory, as the program sees it
MAX_MESSAGE = 64 << 20  # largest message the judge accepts from the program


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc, ctypes


def _mount(libc, ctypes, src, dst, fstype, flags, data=None):
    enc = lambda x: None if x is None else x.encode()  # noqa: E731
    if libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {src} -> {dst} failed")


def _private_root(workdir, python, disk_bytes):
    """Build a new root file system for the program and enter it (mount namespace only): a read-only tmpfs
    holding /usr, /lib*, /bin, /sbin and the interpreter's prefix (read-only binds), /dev/null, /dev/zero,
    /dev/urandom, a fresh /proc, and `/box`: a size-capped tmpfs (the only writable place) holding a copy of
    the run's files. Nothing else of the host (data files, the project, home directories, /tmp, /etc, sockets)
    is visible. The host run directory is read and deleted before the new root is entered, so nothing of the
    run stays on the host even when nobody cleans up after it. Returns the run directory's new path."""
    libc, ctypes = _libc()
    _mount(libc, ctypes, None, "/", None, MS_REC | 1 << 18)  # MS_PRIVATE: no mount events back to the host
    files = {}
    for name in os.listdir(workdir):
        with open(os.path.join(workdir, name), "rb") as fi:
            files[name] = fi.read()
        os.unlink(os.path.join(workdir, name))
    os.rmdir(workdir)
    new = os.path.dirname(workdir)  # mounted over in this namespace only
    _mount(libc, ctypes, "tmpfs", new, "tmpfs", 0, "size=4m,mode=755")
    binds = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if not prefix.startswith("/usr/"):
        binds.append(prefix)
    for src in binds:
        if not os.path.exists(src):
            continue
        dst = new + src
        if os.path.islink(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.readlink(src), dst)
            continue
        os.makedirs(dst, exist_ok=True)
        _mount(libc, ctypes, src, dst, None, MS_BIND | MS_REC)
        _mount(libc, ctypes, None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)
    os.makedirs(new + "/dev")
    for dev in ("null", "zero", "urandom", "random"):
        open(new + "/dev/" + dev, "w").close()
        _mount(libc, ctypes, "/dev/" + dev, new + "/dev/" + dev, None, MS_BIND)
    os.makedirs(new + "/proc")
    _mount(libc, ctypes, "proc", new + "/proc", "proc", 2 | 8 | 4)  # nosuid, noexec, nodev
    os.makedirs(new + BOX)
    _mount(libc, ctypes, "tmpfs", new + BOX, "tmpfs", 2 | 4, f"size={int(disk_bytes)},nr_inodes=4096,mode=700")
    for name, data in files.items():
        with open(new + BOX + "/" + name, "wb") as fo:
            fo.write(data)
    os.chdir(new)
    if libc.syscall(_PIVOT_ROOT, b".", b".") != 0:
        raise OSError(ctypes.get_errno(), "pivot_root failed")
    if libc.umount2(b".", 2) != 0:  # MNT_DETACH: drop the old root
        raise OSError(ctypes.get_errno(), "umount of the old root failed")
    os.chdir("/")
    _mount(libc, ctypes, None, "/", None, MS_REMOUNT | MS_RDONLY)
    return BOX


_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)


def _set_limits(lim):
    import resource

    table = {
        "cpu_s": resource.RLIMIT_CPU,
        "memory_bytes": resource.RLIMIT_AS,
        "file_bytes": resource.RLIMIT_FSIZE,
        "nproc": resource.RLIMIT_NPROC,
        "nofile": resource.RLIMIT_NOFILE,
    }
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for key, res in table.items():
        if key not in lim:
            continue
        v = int(lim[key])
        resource.setrlimit(res, (v, v))


# seccomp: refuse clone/unshare with CLONE_NEWUSER (a nested user namespace would give the program mount
# rights, hence tmpfs memory outside RLIMIT_AS), clone3 (its flags are out of the filter's reach: ENOSYS
# makes the C library fall back to clone), memory that RLIMIT_AS does not count (memfd_create, memfd_secret,
# System V shared memory: pages that need not be mapped), and every syscall of another ABI (x32, i386).
# arch: (audit arch, clone, unshare, clone3, [refused outright: memfd_create, shmget, memfd_secret])
_ARCH = {"x86_64": (0xC000003E, 56, 272, 435, [319, 29, 447]), "aarch64": (0xC00000B7, 220, 97, 435, [279, 194, 447])}
CLONE_NEWUSER = 0x10000000


def _forbid_user_namespaces(libc, ctypes):
    arch = _ARCH.get(os.uname().machine)
    if arch is None:
        raise OSError("seccomp filter: unsupported machine " + os.uname().machine)
    audit, nr_clone, nr_unshare, nr_clone3, refused = arch
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    prog = [
        (ld, 0, 0, 4),  # arch
        (jeq, 1, 0, audit),
        (ret, 0, 0, eperm),  # another ABI
        (ld, 0, 0, 0),  # syscall number
        (jge, 0, 1, 0x40000000),  # x32
        (ret, 0, 0, eperm),
        (jeq, 0, 1, nr_clone3),
        (ret, 0, 0, enosys),
    ]
    for nr in refused:
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    prog += [
        (jeq, 2, 0, nr_clone),  # -> flags
        (jeq, 1, 0, nr_unshare),  # -> flags
        (ret, 0, 0, allow),
        (ld, 0, 0, 16),  # flags (first argument, low 32 bits)
        (jset, 0, 1, CLONE_NEWUSER),
        (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    arr = (Filter * len(prog))(*[Filter(*f) for f in prog])
    fprog = Prog(len(prog), arr)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    if libc.prctl(22, 2, ctypes.cast(ctypes.byref(fprog), ctypes.c_void_p), 0, 0) != 0:  # PR_SET_SECCOMP
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


def boot(cfg):
    import resource  # noqa: F401  (imported before the private root hides this interpreter's library)
    import select
    import signal
    import time
    import traceback

    libc, ctypes = _libc()
    host_workdir = workdir = cfg["workdir"]
    in_pidns = os.getpid() == 1
    if cfg.get("readonly_fs"):
        workdir = _private_root(workdir, cfg["python"], cfg["limits"]["disk_bytes"])
        cfg = dict(cfg, workdir=workdir, env=dict(cfg["env"], HOME=workdir, TMPDIR=workdir))
    os.chdir(workdir)
    uid = cfg.get("uid")
    if uid is not None and os.geteuid() == 0 and cfg.get("readonly_fs"):
        for name in os.listdir(workdir):
            os.chown(os.path.join(workdir, name), uid, uid)
        os.chown(workdir, uid, uid)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of the run come back to this process
    init = os.getpid()
    pid = os.fork()
    if pid == 0:  # the program's process
        try:
            for fd in cfg["init_fds"]:
                os.close(fd)
            _set_limits(cfg["limits"])
            if uid is not None and os.geteuid() == 0:
                os.setgroups([])
                os.setgid(cfg["gid"])
                os.setuid(uid)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (set after setuid, which clears it)
            if os.getppid() != init:
                os._exit(137)
            if cfg.get("forbid_userns"):
                _forbid_user_namespaces(libc, ctypes)
            py = cfg["python"]
            os.execve(py, [py, "-I", "-B", os.path.join(workdir, "child.py"), "run", json.dumps(cfg)], cfg["env"])
        except BaseException:
            traceback.print_exc()
        os._exit(127)
    _init(pid, cfg, in_pidns, host_workdir, select, signal, time)


def _init(pid, cfg, in_pidns, host_workdir, select, signal, time):
    """Wait for the program; reap orphans; end the run when the program ends, at the deadline, or when the
    lifeline (a pipe whose other end only the trainer holds) reports that the trainer is gone."""
    for fd in cfg["close_in_init"]:
        os.close(fd)
    lifeline = cfg["lifeline_fd"]
    deadline = time.monotonic() + cfg["deadline_s"]
    status, abandoned, late = None, False, False
    watch = [lifeline]
    try:
        watch.append(os.pidfd_open(pid))
    except (AttributeError, OSError):
        pass
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0:
            status, late = 128 + signal.SIGKILL, True
            break
        ready, _, _ = select.select(watch, [], [], min(left, 0.05))
        if lifeline in ready:
            status, abandoned = 128 + signal.SIGKILL, True
            break
        while True:  # reap every finished child; note the program's own status
            try:
                got, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if got == 0:
                break
            if got == pid:
                status = os.waitstatus_to_exitcode(st)
                status = 128 - status if status < 0 else status
    if not in_pidns:  # without a PID namespace nothing dies with this process: kill what the run started
        _kill_descendants(signal)
        if abandoned or late:  # the trainer may never clean up: remove the run directory here
            import shutil
            import subprocess

            try:
                shutil.rmtree(host_workdir, ignore_errors=True)
            except RecursionError:
                pass
            if os.path.exists(host_workdir):
                subprocess.run(["rm", "-rf", "--one-file-system", host_workdir], capture_output=True)
    os._exit(status)


def _kill_descendants(signal):
    """SIGKILL every process that is, or becomes (this process is a subreaper), a child of this one."""
    me = str(os.getpid())
    for _ in range(1000):
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()
                    if fields[1].decode() == me:
                        kids.append(int(d))
                except (OSError, IndexError):
                    pass
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        reaped = 0
        while True:
            try:
                got, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if got == 0:
                break
            reaped += 1
        if not kids and not reaped:
            import time

            time.sleep(0.005)


def _no_network(event, args):
    if event.startswith("socket."):
        raise PermissionError(f"network access is disabled in the sandbox ({event})")


# ------------------------------------------------------------------ values between the program and the judge
# A value travels as [tag, payload]. Only exact builtin types are encoded as values (subclasses, whose
# methods the program would control, are not); anything else stays in the program as a handle ("h", id).

_PLAIN = {type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset, bytearray}


def _enc(x, handles, depth=0):
    t = type(x)
    if t not in _PLAIN or depth > 64:
        handles.append(x)
        return ["h", len(handles) - 1]
    if x is None:
        return ["n"]
    if t is bool:
        return ["b", x]
    if t is int:
        return ["i", hex(x)]
    if t is float:
        return ["f", x.hex()]
    if t is complex:
        return ["c", [x.real.hex(), x.imag.hex()]]
    if t is str:
        return ["s", x]
    if t is bytes or t is bytearray:
        return ["y" if t is bytes else "Y", x.hex()]
    if t is dict:
        return ["d", [[_enc(k, handles, depth + 1), _enc(v, handles, depth + 1)] for k, v in x.items()]]
    tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
    return [tag, [_enc(v, handles, depth + 1) for v in x]]


def _dec(v, handle):
    """Decode strictly: anything malformed raises ValueError. `handle(id)` makes what a handle becomes."""
    if not isinstance(v, list) or not v or not isinstance(v[0], str):
        raise ValueError("malformed value")
    tag = v[0]
    if tag == "n" and len(v) == 1:
        return None
    if len(v) != 2:
        raise ValueError("malformed value")
    p = v[1]
    if tag == "b" and type(p) is bool:
        return p
    if tag == "i" and type(p) is str:
        return int(p, 16)
    if tag == "f" and type(p) is str:
        return float.fromhex(p)
    if tag == "c" and type(p) is list and len(p) == 2 and all(type(q) is str for q in p):
        return complex(float.fromhex(p[0]), float.fromhex(p[1]))
    if tag == "s" and type(p) is str:
        return p
    if tag in ("y", "Y") and type(p) is str:
        return bytes.fromhex(p) if tag == "y" else bytearray.fromhex(p)
    if tag == "h" and type(p) is int:
        return handle(p)
    if tag == "d" and type(p) is list:
        out = {}
        for kv in p:
            if type(kv) is not list or len(kv) != 2:
                raise ValueError("malformed dict")
            out[_dec(kv[0], handle)] = _dec(kv[1], handle)
        return out
    if tag in ("l", "t", "S", "F") and type(p) is list:
        items = [_dec(q, handle) for q in p]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    raise ValueError("malformed value")


class _Lines:
    """Newline-delimited JSON messages over a pair of pipes, with a size cap on what is read."""

    def __init__(self, rfd, wfd, cap=MAX_MESSAGE):
        self.rfd, self.wfd, self.cap, self.buf = rfd, wfd, cap, bytearray()

    def send(self, msg):
        data = json.dumps(msg).encode() + b"\n"
        while data:
            data = data[os.write(self.wfd, data):]

    def recv(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return json.loads(line)
            if len(self.buf) > self.cap:
                raise EOFError("message too large")
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise EOFError("the program's process ended")
            self.buf += chunk


def serve(cfg):
    """The program's side in assert mode: execute it, then answer requests until the judge is done."""
    import builtins
    import traceback

    conn = _Lines(cfg["req_fd"], cfg["resp_fd"], cap=1 << 62)
    with open("program.py", encoding="utf-8") as f:
        program = f.read()
    g = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(program, "program.py", "exec"), g)
    except BaseException:  # an error or an exit while defining the solution: every test fails
        traceback.print_exc()
        conn.send(["err", "program", "the program raised while it was defined"])
        return
    handles = [g]
    conn.send(["ready"])
    mutable = (list, dict, set, bytearray)
    while True:
        try:
            req = conn.recv()
        except EOFError:
            return
        op, h = req["op"], req.get("h", 0)
        try:
            obj = handles[h]
            if op == "names":
                out = [k for k in g if type(k) is str and not k.startswith("__")]
            elif op == "global":
                out = g[req["name"]]
            elif op == "getattr":
                out = getattr(obj, req["name"])
            elif op == "call":
                args = [_dec(a, handles.__getitem__) for a in req["args"]]
                kwargs = {k: _dec(a, handles.__getitem__) for k, a in req["kwargs"].items()}
                out = obj(*args, **kwargs)
                back = [[i, _enc(a, handles)] for i, a in enumerate(args) if type(a) in mutable]
                back += [[k, _enc(a, handles)] for k, a in kwargs.items() if type(a) in mutable]
                conn.send(["ok", _enc(out, handles), back])
                continue
            elif op == "iter":
                out = iter(obj)
            elif op == "next":
                out = next(obj)
            elif op == "getitem":
                out = obj[_dec(req["key"], handles.__getitem__)]
            elif op == "len":
                out = len(obj)
            else:
                raise ValueError(f"unknown request {op!r}")
            conn.send(["ok", _enc(out, handles), []])
        except BaseException as e:  # the program's exception goes to the test as the same builtin type
            conn.send(["raise", type(e).__name__, str(e)[:2000]])


class _Remote:
    """A program object that is not a plain value. Every use is a request to the program's process; results
    come back as plain values (or other handles). Equality is identity: `==` is never the program's."""

    __slots__ = ("_h", "_conn")

    def __init__(self, h, conn):
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "_conn", conn)

    def _ask(self, op, **kw):
        return _ask(self._conn, op, h=self._h, **kw)

    def __call__(self, *args, **kwargs):
        return self._ask("call", args=list(args), kwargs=kwargs)

    def __getattr__(self, name):
        return self._ask("getattr", name=name)

    def __iter__(self):
        return self._ask("iter")

    def __next__(self):
        return self._ask("next")

    def __getitem__(self, key):
        return self._ask("getitem", key=key)

    def __len__(self):
        n = self._ask("len")
        if type(n) is not int:
            raise TypeError("len() of a sandboxed object did not return an int")
        return n

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<object {self._h} of the sandboxed program>"


def _judge_enc(x, depth=0):
    """Encode a test's value for the program: plain values and handles only."""
    t = type(x)
    if t is _Remote:
        return ["h", x._h]
    if t not in _PLAIN or depth > 64:
        raise TypeError(f"a test can only pass plain values to the program, not {t.__name__}")
    if t in (list, tuple, set, frozenset):
        return [{list: "l", tuple: "t", set: "S", frozenset: "F"}[t], [_judge_enc(v, depth + 1) for v in x]]
    if t is dict:
        return ["d", [[_judge_enc(k, depth + 1), _judge_enc(v, depth + 1)] for k, v in x.items()]]
    return _enc(x, [])


def _ask(conn, op, h=0, args=None, kwargs=None, name=None, key=None):
    import builtins

    req = {"op": op, "h": h}
    if op == "call":
        req["args"] = [_judge_enc(a) for a in args]
        req["kwargs"] = {k: _judge_enc(v) for k, v in kwargs.items()}
    if name is not None:
        req["name"] = name
    if op == "getitem":
        req["key"] = _judge_enc(key)
    conn.send(req)
    msg = conn.recv()
    if type(msg) is not list or not msg:
        raise RuntimeError("malformed answer from the program")
    if msg[0] == "raise" and len(msg) == 3 and type(msg[1]) is str and type(msg[2]) is str:
        cls = getattr(builtins, msg[1], None) if msg[1].isidentifier() else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            raise cls(msg[2])
        raise RuntimeError(f"{msg[1]}: {msg[2]}")
    if msg[0] != "ok" or len(msg) != 3 or type(msg[2]) is not list:
        raise RuntimeError("malformed answer from the program")
    handle = lambda i: _Remote(i, conn)  # noqa: E731
    value = _dec(msg[1], handle)
    if op == "call":  # arguments the program changed in place: the same change here
        for where, enc in msg[2]:
            orig = args[where] if type(where) is int and 0 <= where < len(args) else kwargs.get(where)
            new = _dec(enc, handle)
            if type(orig) is not type(new):
                continue
            if type(orig) in (list, bytearray):
                orig[:] = new
            else:
                orig.clear()
                orig.update(new)
    return value


def _global_names(code):
    names = set(code.co_names)
    for c in code.co_consts:
        if hasattr(c, "co_names"):
            names |= _global_names(c)
    return names


def judge(cfg):
    """Run the tests against the program in the other process; one "P"/"F" line per test on the result fd."""
    import builtins
    import importlib
    import traceback

    res = cfg["result_fd"]
    with os.fdopen(cfg["tests_fd"], "rb") as f:  # an unlinked file: the tests are in no file system
        f.seek(0)
        tests = json.loads(f.read().decode("utf-8"))
    conn = _Lines(cfg["resp_fd"], cfg["req_fd"])
    codes = []
    for i, t in enumerate(tests):
        try:
            codes.append(compile(t, f"test_{i}", "exec", dont_inherit=True))
        except SyntaxError:
            codes.append(None)
    try:
        hello = conn.recv()
    except (EOFError, ValueError):
        hello = None
    if hello != ["ready"]:
        os.write(res, b"E\n")
        return
    g = {"__name__": "__main__", "__builtins__": builtins}
    wanted = set().union(*[_global_names(c) for c in codes if c is not None]) - set(dir(builtins))
    try:
        names = set(_ask(conn, "names")) & wanted
        for n in sorted(names):
            if type(n) is not str:
                continue
            if n in sys.stdlib_module_names:  # a module the program imported: the judge imports its own
                try:
                    g[n] = importlib.import_module(n)
                    continue
                except ImportError:
                    pass
            g[n] = _ask(conn, "global", name=n)
    except BaseException:
        traceback.print_exc()
    for i, code in enumerate(codes):
        ok = False
        if code is not None:
            try:
                exec(code, g)
                ok = True
            except BaseException as e:  # a failing assert, an error, or a SystemExit inside the test
                print(f"test {i}: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
        os.write(res, b"P\n" if ok else b"F\n")


def script(cfg):
    import builtins

    with open("program.py", encoding="utf-8") as f:
        program = f.read()
    exec(compile(program, "program.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})


def run(cfg):
    sys.addaudithook(_no_network)
    {"script": script, "serve": serve, "judge": judge}[cfg["role"]](cfg)


if __name__ == "__main__":
    phase, cfg = sys.argv[1], json.loads(sys.argv[2])
    {"boot": boot, "run": run}[phase](cfg)
