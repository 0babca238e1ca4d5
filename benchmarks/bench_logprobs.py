"""Log-probs of given tokens from logits: lengthrl's chunked selective log-softmax vs the naive full log-softmax.

Each measurement runs in a fresh subprocess: logits [B, T+1, V] are allocated and sliced to [B, T, V] as in
`compute_logprobs`, the current RSS is read, the op runs once, and the peak extra memory is
ru_maxrss - RSS before (the op's temporaries and output; the logits themselves are excluded). Time is the
median of 3 more runs in the same subprocess. Forward only: the backward's gradient of the logits is full size
for both methods.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import table, write

CHILD = r"""
import json, resource, statistics, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
method, B, T, V = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from lengthrl.rollout.logprobs import selective_log_softmax
def naive(lg, ix):
    return torch.log_softmax(lg.float(), dim=-1).gather(-1, ix.unsqueeze(-1)).squeeze(-1)
fn = {"chunked": selective_log_softmax, "naive": naive}[method]
g = torch.Generator().manual_seed(0)
logits = torch.randn(B, T + 1, V, generator=g)[:, :-1]
ix = torch.randint(0, V, (B, T), generator=g)
def rss_kb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // 1024
before = rss_kb()
out = fn(logits, ix)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ts = []
for _ in range(3):
    t0 = time.perf_counter(); fn(logits, ix); ts.append(time.perf_counter() - t0)
print(json.dumps({"peak_extra_mb": (peak - before) / 1024, "s": statistics.median(ts),
                  "logits_mb": logits.numel() * 4 / 2**20, "checksum": float(out.sum())}))
"""

CASES = [(4, 512, 32768), (2, 512, 151936), (1, 2048, 151936)]
QUICK = [(2, 256, 32768), (1, 256, 151936)]


def measure(method: str, B: int, T: int, V: int, threads: int) -> dict:
    """One measurement in a fresh interpreter (so ru_maxrss starts clean)."""
    p = subprocess.run([sys.executable, "-c", CHILD, method, str(B), str(T), str(V), str(threads)],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(quick: bool = False, threads: int = 1) -> dict:
    rows = []
    for B, T, V in QUICK if quick else CASES:
        got = {m: measure(m, B, T, V, threads) for m in ("naive", "chunked")}
        assert abs(got["naive"]["checksum"] - got["chunked"]["checksum"]) < 1e-2 * B * T, "methods disagree"
        row = {"B": B, "T": T, "V": V, "logits_mb": got["naive"]["logits_mb"],
               "naive_peak_mb": got["naive"]["peak_extra_mb"], "chunked_peak_mb": got["chunked"]["peak_extra_mb"],
               "naive_s": got["naive"]["s"], "chunked_s": got["chunked"]["s"]}
        row["peak_ratio"] = row["chunked_peak_mb"] / max(row["naive_peak_mb"], 1e-9)
        row["speed_x_naive"] = row["naive_s"] / row["chunked_s"]
        rows.append(row)
        print(f"  logprobs B={B} T={T} V={V}: peak {row['chunked_peak_mb']:.0f} vs {row['naive_peak_mb']:.0f} MB "
              f"({row['peak_ratio']:.3f}x), speed {row['speed_x_naive']:.2f}x naive", flush=True)
    print(table(rows, ["B", "T", "V", "logits_mb", "naive_peak_mb", "chunked_peak_mb", "peak_ratio", "naive_s",
                       "chunked_s", "speed_x_naive"]))
    write("logprobs", {"rows": rows})
    return {"rows": rows}
