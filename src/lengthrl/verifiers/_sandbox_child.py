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


def _unescape(path):
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _readonly_except(workdir):
    """Bind `workdir` onto itself, then remount every other mount point read-only (this mount namespace only)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    wd = workdir.encode()
    if libc.mount(wd, wd, None, MS_BIND | MS_REC, None) != 0:
        raise OSError(ctypes.get_errno(), "bind mount of the working directory failed")
    with open("/proc/self/mountinfo") as f:
        points = [_unescape(line.split()[4]) for line in f if line.strip()]
    failed = []
    for mp in points:
        if mp == workdir or mp.startswith("/proc"):
            continue
        if libc.mount(None, mp.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None) != 0:
            failed.append(mp)
    return failed


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
        v = int(lim[key])
        resource.setrlimit(res, (v, v))


def boot(cfg):
    workdir = cfg["workdir"]
    if cfg.get("readonly_fs"):
        _readonly_except(workdir)
    os.chdir(workdir)
    _set_limits(cfg["limits"])
    uid = cfg.get("uid")
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
