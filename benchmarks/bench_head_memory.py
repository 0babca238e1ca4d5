"""Memory of the update's LM head at a real vocabulary: the chunked head (`logprob_chunk`, lengthrl.rollout.chunked)
vs the full-logits path (`logprob_chunk = -1`, the path before the chunked head existed).

Each measurement runs in a fresh subprocess: a random Qwen2 with Qwen2's vocabulary (151,936) and a small body
(hidden 64, 1 layer, untied head, float32 on both sides) is built, a batch of B responses of T tokens after
8-token prompts is made, the RSS is read, then one forward + backward of the luspo loss runs through
`compute_logprobs` (the training forward), and the peak extra memory is ru_maxrss - RSS before: the head's
logits, their gradient and the body's activations. The body is small so that the head, whose memory does not
depend on the hidden size, dominates and the measurement fits a small CPU machine. Time: one update.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import table, write

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
chunk, B, T = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
from transformers import Qwen2Config, Qwen2ForCausalLM
from lengthrl.objectives import policy_loss
from lengthrl.rollout import compute_logprobs
V, P = 151936, 8
cfg = Qwen2Config(vocab_size=V, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=128, max_position_embeddings=T + P + 1, tie_word_embeddings=False)
torch.manual_seed(0)
model = Qwen2ForCausalLM(cfg).float().train()
g = torch.Generator().manual_seed(0)
pid, rid = torch.randint(0, V, (B, P), generator=g), torch.randint(0, V, (B, T), generator=g)
pm, rm = torch.ones(B, P, dtype=torch.long), torch.ones(B, T, dtype=torch.long)
adv = torch.randn(B, generator=g)
def rss_kb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // 1024
before = rss_kb()
t0 = time.perf_counter()
logp = compute_logprobs(model, pid, pm, rid, rm, logprob_chunk=chunk)
out = policy_loss("luspo", logp, logp.detach(), adv, rm.float())
out.loss.backward()
s = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_extra_mb": (peak - before) / 1024, "s": s, "grad_norm": float(model.lm_head.weight.grad.norm())}))
"""

CASES = [(8, 256), (8, 512), (8, 1024)]
QUICK = [(2, 128)]
CHUNK = 0  # the default: auto (441 tokens at this vocabulary)


def measure(chunk: int, B: int, T: int, threads: int) -> dict:
    """One measurement in a fresh interpreter (so ru_maxrss starts clean)."""
    p = subprocess.run([sys.executable, "-c", CHILD, str(chunk), str(B), str(T), str(threads)],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(quick: bool = False, threads: int = 1, cases=None) -> dict:
    rows = []
    for B, T in cases or (QUICK if quick else CASES):
        full, chunked = measure(-1, B, T, threads), measure(CHUNK, B, T, threads)
        rows.append({"B": B, "T": T, "vocab": 151936, "mb_full_logits": full["peak_extra_mb"],
                     "mb_chunked": chunked["peak_extra_mb"],
                     "memory_ratio": chunked["peak_extra_mb"] / full["peak_extra_mb"],
                     "s_full_logits": full["s"], "s_chunked": chunked["s"], "time_ratio": chunked["s"] / full["s"],
                     "grad_norm_rel_diff": abs(chunked["grad_norm"] - full["grad_norm"]) / full["grad_norm"]})
    print("one update (luspo, forward + backward through compute_logprobs), Qwen2 vocabulary 151,936, float32 both")
    print("sides; baseline: logprob_chunk = -1 (full [B, T, V] logits); chunked: logprob_chunk = 0 (auto, 441 tokens)")
    print(table(rows, ["B", "T", "mb_full_logits", "mb_chunked", "memory_ratio", "s_full_logits", "s_chunked",
                       "time_ratio", "grad_norm_rel_diff"]))
    payload = {"rows": rows, "baseline": "logprob_chunk = -1 (full logits), float32",
               "chunked": "logprob_chunk = 0 (auto), float32"}
    write("head_memory", payload)
    return payload
