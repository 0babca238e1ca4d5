"""Memory of one policy-gradient update: transformers' gradient checkpointing (`gradient_checkpointing = true`)
vs keeping every layer's activations.

Each measurement runs in a fresh subprocess: the ~30M-parameter random Llama (benchmarks.models, 10 layers) and
a batch of B responses of T tokens after 32-token prompts are built, the RSS is read, one forward + backward of
the luspo loss runs (`compute_logprobs`, `policy_loss`), and the peak extra memory is ru_maxrss - RSS before
(activations, logits, gradients). Time: the median of 3 more updates in the same subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import table, write

CHILD = r"""
import json, resource, statistics, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
gc, B, T = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
from benchmarks.models import build
from lengthrl.objectives import policy_loss
from lengthrl.rollout import compute_logprobs
from lengthrl.train.loop import enable_gradient_checkpointing
model, tok, n_params = build("llama30m")
if gc:
    enable_gradient_checkpointing(model)
model.train()
g = torch.Generator().manual_seed(0)
P = 32
pid = torch.randint(4, model.config.vocab_size, (B, P), generator=g)
rid = torch.randint(4, model.config.vocab_size, (B, T), generator=g)
pm, rm = torch.ones(B, P, dtype=torch.long), torch.ones(B, T, dtype=torch.long)
adv = torch.randn(B, generator=g)
def step():
    logp = compute_logprobs(model, pid, pm, rid, rm)
    out = policy_loss("luspo", logp, logp.detach(), adv, rm.float())
    out.loss.backward()
    model.zero_grad(set_to_none=True)
def rss_kb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // 1024
before = rss_kb()
step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ts = []
for _ in range(3):
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
print(json.dumps({"peak_extra_mb": (peak - before) / 1024, "s": statistics.median(ts), "params": n_params}))
"""

CASES = [(8, 256), (8, 512), (4, 1024 - 32)]
QUICK = [(4, 128)]


def measure(gc: bool, B: int, T: int, threads: int) -> dict:
    """One measurement in a fresh interpreter (so ru_maxrss starts clean)."""
    p = subprocess.run([sys.executable, "-c", CHILD, "1" if gc else "0", str(B), str(T), str(threads)],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(quick: bool = False, threads: int = 1) -> dict:
    rows = []
    for B, T in QUICK if quick else CASES:
        base, gc = measure(False, B, T, threads), measure(True, B, T, threads)
        rows.append({"B": B, "T": T, "mb_plain": base["peak_extra_mb"], "mb_checkpointed": gc["peak_extra_mb"],
                     "memory_ratio": gc["peak_extra_mb"] / base["peak_extra_mb"], "s_plain": base["s"],
                     "s_checkpointed": gc["s"], "time_ratio": gc["s"] / base["s"]})
    print("one update (luspo, forward + backward) of a ~30M Llama, 10 layers: peak extra memory and time,")
    print("gradient checkpointing vs none (ratios < 1 for memory: the saving)")
    print(table(rows, ["B", "T", "mb_plain", "mb_checkpointed", "memory_ratio", "s_plain", "s_checkpointed",
                       "time_ratio"]))
    payload = {"rows": rows}
    write("memory", payload)
    return payload
