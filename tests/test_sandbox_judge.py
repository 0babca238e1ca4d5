"""Assert-test mode: the tests run in a judge process that never executes the program; the program's values
come back as plain, typed values. Programs that game the harness (an `__eq__` that is always true, patched
builtins, a forged result channel, reading the tests) must get reward 0, and honest programs full reward."""

import os
import tempfile
from dataclasses import replace

import pytest

from sandboxkit import namespaces_or_refusal

from lengthrl.tasks.base import Sample
from lengthrl.tasks.code_task import CodeTask
from lengthrl.verifiers import SandboxLimits, isolation, run_program

# generous: these tests are about verdicts, not time
LIM = SandboxLimits(timeout_s=20, cpu_s=10, memory_bytes=512 << 20, max_output_bytes=64 << 10)

TESTS = ["assert f(2) == 5", "assert f(10) == 101", "assert f(-3) == 10"]  # f(x) = x * x + 1
HONEST = "def f(x):\n    return x * x + 1\n"


@pytest.fixture(autouse=True)
def namespaces(request, monkeypatch):
    """Without namespaces only the tests marked weak_sandbox run; the others check the refusal and skip."""
    if not request.node.get_closest_marker("weak_sandbox"):
        namespaces_or_refusal(monkeypatch)

CHEATS = {
    "always_equal": "class E:\n    def __eq__(self, o):\n        return True\n    __hash__ = None\n"
    "    def __ne__(self, o):\n        return False\n    def __bool__(self):\n        return True\n"
    "def f(x):\n    return E()\n",
    "int_subclass_equal": "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
    "def f(x):\n    return I(0)\n",
    "patch_builtins_exec_compile": (
        "import builtins\n_c = builtins.compile\n"
        "builtins.compile = lambda src, *a, **k: _c('pass', 'x', 'exec')\n"
        "builtins.exec = lambda *a, **k: None\nbuiltins.eval = lambda *a, **k: True\n"
        "def f(x):\n    return 0\n"
    ),
    "patch_os_write": (
        "import os\n_w = os.write\nos.write = lambda fd, b: _w(fd, b.replace(b'F', b'P').replace(b'E', b'P\\nP\\nP'))\n"
        "def f(x):\n    return 0\n"
    ),
    "forge_every_descriptor": (
        "import os\nfor fd in range(3, 256):\n    try:\n        os.write(fd, b'P\\nP\\nP\\n')\n    except OSError:\n        pass\n"
        "def f(x):\n    return 0\n"
    ),
    "forge_then_exit": (
        "import os\nfor fd in range(3, 256):\n    try:\n        os.write(fd, b'P\\nP\\nP\\n')\n    except OSError:\n        pass\n"
        "os._exit(0)\n"
    ),
    "shadow_builtins": (
        "def f(x):\n    return 0\n"
        "class AssertionError(Exception):\n    pass\n"
        "def isinstance(*a):\n    return True\nabs = lambda x: 0\nlen = lambda x: 0\n"
    ),
    "read_the_tests_from_files": (
        "import os, re\nTABLE = {}\n"
        "for root, dirs, files in os.walk(TOP):\n"
        "    dirs[:] = [d for d in dirs if d not in ('sys', 'proc', 'usr', 'lib', 'lib64', 'lib32', 'bin', 'sbin')]\n"
        "    for name in files:\n        try:\n            text = open(os.path.join(root, name), errors='ignore').read(1 << 20)\n"
        "        except OSError:\n            continue\n"
        "        for a, b in re.findall(r'f\\((-?\\d+)\\) == (-?\\d+)', text):\n            TABLE[int(a)] = int(b)\n"
        "def f(x):\n    return TABLE.get(x, 0)\n"
    ),
    "read_the_tests_from_memory": (
        "import gc, re, sys\nTABLE = {}\n"
        "def scan():\n    for o in gc.get_objects():\n        for s in (o if isinstance(o, (list, tuple)) else [o]):\n"
        "            if isinstance(s, str):\n                for a, b in re.findall(r'f\\((-?\\d+)\\) == (-?\\d+)', s):\n"
        "                    TABLE[int(a)] = int(b)\n"
        "    fr = sys._getframe()\n    while fr:\n        for v in list(fr.f_locals.values()):\n"
        "            if isinstance(v, str):\n                for a, b in re.findall(r'f\\((-?\\d+)\\) == (-?\\d+)', v):\n"
        "                    TABLE[int(a)] = int(b)\n        fr = fr.f_back\n"
        "def f(x):\n    scan()\n    return TABLE.get(x, 0)\n"
    ),
    "read_other_processes": (
        "import os, re\nTABLE = {}\n"
        "for pid in os.listdir('/proc'):\n    for part in ('cmdline', 'environ'):\n        try:\n"
        "            text = open(f'/proc/{pid}/{part}', 'rb').read().decode('latin-1')\n        except OSError:\n"
        "            continue\n        for a, b in re.findall(r'f\\\\?\\((-?\\d+)\\) == (-?\\d+)', text):\n"
        "            TABLE[int(a)] = int(b)\n"
        "    try:\n        fds = os.listdir(f'/proc/{pid}/fd')\n    except OSError:\n        continue\n"
        "    for fd in fds:\n        try:\n            text = open(f'/proc/{pid}/fd/{fd}', 'rb').read(1 << 20).decode('latin-1')\n"
        "        except OSError:\n            continue\n"
        "        for a, b in re.findall(r'f\\((-?\\d+)\\) == (-?\\d+)', text):\n            TABLE[int(a)] = int(b)\n"
        "def f(x):\n    return TABLE.get(x, 0)\n"
    ),
    "exit_during_a_call": "import os\ndef f(x):\n    os._exit(0)\n",
    "raise_system_exit_zero": "def f(x):\n    raise SystemExit(0)\n",
    "answer_true_to_everything": (  # the harness in the program's process answers through json.dumps
        "import json\ndef f(x):\n    return 0\njson.dumps = lambda *a, **k: '[\"ok\", [\"b\", true], []]'\n"
    ),
}


def _cheat(name, top="/"):
    return f"TOP = {top!r}\n" + CHEATS[name]


def test_honest_program_gets_full_reward():
    res = run_program(HONEST, TESTS, limits=LIM)
    assert res.passed == [True, True, True], res.stderr[-500:]


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheating_program_gets_zero(name):
    res = run_program(_cheat(name), TESTS, limits=LIM)
    assert res.passed == [False, False, False], (res.status, res.stderr[-800:])


@pytest.mark.parametrize("name", ["always_equal", "patch_builtins_exec_compile", "read_the_tests_from_files"])
def test_code_task_gives_cheats_zero_and_honest_programs_one(name):
    task = CodeTask([Sample(id="s", prompt="p", answer="", meta={"tests": TESTS})], limits=LIM)
    s = task.samples()[0]
    assert task.score(s, f"```python\n{HONEST}```").reward == 1.0
    assert task.score(s, f"```python\n{_cheat(name)}```").reward == 0.0


def test_shadowed_builtins_do_not_reach_the_tests():
    """A test that uses abs/len/isinstance sees the builtins, not the program's redefinitions."""
    prog = CHEATS["shadow_builtins"].replace("return 0", "return x / 2")
    tests = ["assert abs(f(3) - 1.5) < 1e-9", "assert len([f(1)]) == 1", "assert isinstance(f(2), float)",
             "assert abs(f(3) - 9.0) < 1e-9", "assert isinstance(f(2), str)"]
    assert run_program(prog, tests, limits=LIM).passed == [True, True, True, False, False]


def test_values_keep_their_types():
    """Plain values come back with their exact builtin type: 1 != '1', (1, 2) != [1, 2], True is not 1 for
    `is`, floats are exact (hex), big ints travel whole."""
    prog = (
        "def s():\n    return '1'\ndef t():\n    return (1, 2)\ndef l():\n    return [1, 2]\n"
        "def big():\n    return 7 ** 5000\ndef fl():\n    return 0.1 + 0.2\n"
        "def d():\n    return {(1, 'a'): {1, 2}, 'b': frozenset([b'x'])}\ndef c():\n    return 1 + 2j\n"
    )
    tests = ["assert s() == 1", "assert t() == [1, 2]", "assert t() == (1, 2) and l() == [1, 2]",
             "assert type(s()) is str and type(t()) is tuple", "assert big() == 7 ** 5000",
             "assert big() == 7 ** 5000 + 1", "assert fl() == 0.1 + 0.2 and fl() != 0.3",
             "assert d() == {(1, 'a'): {1, 2}, 'b': frozenset([b'x'])}", "assert c() == 1 + 2j"]
    res = run_program(prog, tests, limits=LIM)
    assert res.passed == [False, False, True, True, True, False, True, True, True], res.stderr[-800:]


def test_honest_programs_of_common_shapes_pass():
    """Classes with methods, generators, in-place mutation, exceptions, globals, stdlib in tests, a
    HumanEval-style check(candidate), and program output on stdout all work through the judge."""
    prog = (
        "import math\nMOD = 10 ** 9 + 7\n"
        "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
        "        for i, n in enumerate(nums):\n            if target - n in seen:\n                return [seen[target - n], i]\n"
        "            seen[n] = i\n"
        "def gen(n):\n    for i in range(n):\n        yield i * i\n"
        "def sort_in_place(a):\n    a.sort()\n"
        "def fill(d):\n    d['k'] = 1\n"
        "def root(x):\n    if x < 0:\n        raise ValueError('negative')\n    return math.sqrt(x)\n"
        "def candidate(a, b=1):\n    return a + b\n"
        "print('defined')\n"
    )
    tests = [
        "assert Solution().twoSum([2, 7, 11, 15], 9) == [0, 1]",
        "assert list(gen(4)) == [0, 1, 4, 9] and sum(gen(3)) == 5",
        "a = [3, 1, 2]\nsort_in_place(a)\nassert a == [1, 2, 3]",
        "d = {}\nfill(d)\nassert d == {'k': 1}",
        "try:\n    root(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no error')",
        "import math\nassert math.isclose(root(2), 1.41421356, rel_tol=1e-6)",
        "assert MOD == 1000000007",
        "def check(c):\n    assert c(1) == 2\n    assert c(1, b=5) == 6\ncheck(candidate)",
        "for i in range(50):\n    assert candidate(i, i) == 2 * i",
        "assert Solution().twoSum([1, 2], 10) is None",
    ]
    res = run_program(prog, tests, limits=LIM)
    assert res.passed == [True] * len(tests), res.stderr[-1500:]
    assert res.stdout == "defined\n"


def test_a_program_error_or_exit_fails_every_test_and_a_test_that_exits_only_itself():
    res = run_program("def f(:\n  pass", ["assert True", "assert True"], limits=LIM)
    assert res.passed == [False, False] and "SyntaxError" in res.stderr
    res = run_program("raise SystemExit(0)", ["assert True"], limits=LIM)
    assert res.passed == [False]
    res = run_program("x = 1", ["raise SystemExit(0)", "assert x == 1", "import os; os._exit(0)", "assert True"],
                      limits=LIM)
    assert res.passed == [False, True, False, False]


def test_tests_cannot_pass_functions_to_the_program_but_fail_cleanly():
    res = run_program("def apply(g, x):\n    return g(x)\n", ["assert apply(lambda v: v + 1, 1) == 2", "assert True"],
                      limits=LIM)
    assert res.passed == [False, True]
    assert "plain values" in res.stderr


@pytest.mark.weak_sandbox
def test_cheats_get_zero_without_namespaces_too(monkeypatch):
    """The judge and the program are separate processes under separate user ids even without namespaces.
    The run directories go to a fresh directory, which the file-reading cheat searches (without namespaces
    it sees every world-readable host file, copies of these tests included: docs/security.md)."""
    iso = replace(isolation(), namespaces=False, user_namespace=False, readonly_fs=False)
    if not iso.per_run_uid:
        pytest.skip("needs root to run the judge and the program under user ids of their own")
    monkeypatch.setenv("LENGTHRL_SANDBOX_WITHOUT_NAMESPACES", "1")
    runs = tempfile.mkdtemp(prefix="lengthrl-judge-test-")  # in $TMPDIR: reachable by the sandbox users
    os.chmod(runs, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", runs)
    try:
        _weak_cheats(iso, runs)
    finally:
        os.rmdir(runs)  # empty: every run directory was removed


def _weak_cheats(iso, runs):
    assert run_program(HONEST, TESTS, limits=LIM, iso=iso).passed == [True] * 3
    for name in ("always_equal", "patch_os_write", "read_the_tests_from_files", "read_other_processes"):
        res = run_program(_cheat(name, runs), TESTS, limits=LIM, iso=iso)
        assert res.passed == [False] * 3, (name, res.stderr[-500:])
