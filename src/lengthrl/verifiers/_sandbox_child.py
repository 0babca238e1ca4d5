"""The child side of the code sandbox (standard library only; copied into each run's working directory).

Two phases, selected by argv[1]:

  boot <config-json>   runs first, as the launching user, inside the new namespaces when there are any:
                       makes every mount read-only except the working directory (mount namespace only),
                       sets the resource limits, drops to the unprivileged user (when started as root)
                       and execs the `run` phase with a fresh interpreter (`python -I -B`).
  run <config-json>    installs an audit hook that refuses sockets, then executes the candidate program
                       (`program.py`) and, in assert mode, each test of `tests.json`, writing one line per
                       test ("P" passed / "F" failed) to the result file descriptor.

The parent (`lengthrl.verifiers.sandbox`) enforces the wall-clock limit, the output cap and the clean-up.
"""

import json
import os
import sys

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc, ctypes


def _mount(libc, ctypes, src, dst, fstype, flags, data=None):
    enc = lambda x: None if x is None else x.encode()  # noqa: E731
    if libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {src} -> {dst} failed")


BOX = "/box"  # the run directory, as the program sees it


def _private_root(workdir, python, disk_bytes):
    """Build a new root file system for the program and enter it (mount namespace only): a read-only tmpfs
    holding /usr, /lib*, /bin, /sbin and the interpreter's prefix (read-only binds), /dev/null, /dev/zero,
    /dev/urandom, a fresh /proc, and `/box`: a size-capped tmpfs (the only writable place) holding a copy of
    the run's files. Nothing else of the host (data files, the project, home directories, /tmp, /etc, sockets)
    is visible. Returns the run directory's new path."""
    libc, ctypes = _libc()
    _mount(libc, ctypes, None, "/", None, MS_REC | 1 << 18)  # MS_PRIVATE: no mount events back to the host
    new = os.path.join(workdir, "root")
    os.mkdir(new, 0o755)
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
    for name in os.listdir(workdir):
        if name != "root":
            with open(os.path.join(workdir, name), "rb") as fi, open(new + BOX + "/" + name, "wb") as fo:
                fo.write(fi.read())
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


def boot(cfg):
    import resource  # noqa: F401  (imported before the private root hides this interpreter's library)

    workdir = cfg["workdir"]
    if cfg.get("readonly_fs"):
        workdir = _private_root(workdir, cfg["python"], cfg["limits"]["disk_bytes"])
        cfg = dict(cfg, workdir=workdir, env=dict(cfg["env"], HOME=workdir, TMPDIR=workdir))
    os.chdir(workdir)
    uid = cfg.get("uid")
    if uid is not None and os.geteuid() == 0:
        if cfg.get("readonly_fs"):
            for name in os.listdir(workdir):
                os.chown(os.path.join(workdir, name), uid, uid)
            os.chown(workdir, uid, uid)
    _set_limits(cfg["limits"])
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(uid)
    py = cfg["python"]
    os.execve(py, [py, "-I", "-B", os.path.join(workdir, "child.py"), "run", json.dumps(cfg)], cfg["env"])


def _no_network(event, args):
    if event.startswith("socket."):
        raise PermissionError(f"network access is disabled in the sandbox ({event})")


def run(cfg):
    sys.addaudithook(_no_network)
    fd = cfg["result_fd"]
    with open("program.py", encoding="utf-8") as f:
        program = f.read()
    with open("tests.json", encoding="utf-8") as f:
        tests = json.load(f)
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    if not tests:  # stdin/stdout mode: the program runs as a script; its exit status is the verdict
        exec(compile(program, "program.py", "exec"), g)
        return
    try:
        exec(compile(program, "program.py", "exec"), g)
    except BaseException:  # an error or an exit while defining the solution: every test fails
        os.write(fd, b"E\n")
        import traceback

        traceback.print_exc()
        return
    for i, test in enumerate(tests):
        try:
            exec(compile(test, f"test_{i}", "exec"), g)
            ok = True
        except BaseException:  # a failing assert, an error, or a SystemExit inside the test
            ok = False
        os.write(fd, b"P\n" if ok else b"F\n")


if __name__ == "__main__":
    phase, cfg = sys.argv[1], json.loads(sys.argv[2])
    {"boot": boot, "run": run}[phase](cfg)
