"""The GPU check (`make gpu-check`): one script for a CUDA machine with torch and transformers preinstalled and
no network. It creates no virtual environment and installs nothing: it runs from the source tree
(`PYTHONPATH=src`). Every part writes its result to $GPU_CHECK_OUT/gpu_check.json as soon as it finishes, so a
run cut short still reports what it measured.

    GPU_CHECK_OUT=DIR make gpu-check                       # on a CUDA machine (about 8 minutes at most)
    GPU_CHECK_OUT=DIR GPU_CHECK_ALLOW_CPU=1 make gpu-check # its CPU-runnable parts on a CPU, shapes scaled down

Parts:
  gpu_tests        `pytest -m gpu`: the CUDA cases of the `device` fixture (skipped without CUDA)
  rl_steps         20 RL steps of a random Qwen2 of the ~0.5B shape (hidden 896, 24 layers, 14 heads / 2 KV
                   heads, MLP 4864, vocab 151,936) in bfloat16: s/step, rollout tokens/s, update tokens/s, peak
                   CUDA memory
  rollout_engines  rollout tokens/s of the lean decoder (FastEngine) vs transformers `generate` at batch
                   64 x 512 new tokens, the same model, dtype (bfloat16 weights on both sides) and work (EOS
                   never stops a row, so both sample exactly 512 tokens per row)
  lora             a 2-step LoRA run (config key lora_r), when the trainer has LoRA
  resume           a run checkpointed and resumed on one device equals the uninterrupted run

On the CPU (GPU_CHECK_ALLOW_CPU=1) the shapes and step counts are scaled down and the JSON says so
("mode"); GPU_CHECK_TINY=1 shrinks them further (the test suite's run). Dependencies beyond torch and
transformers (the package's own: tokenizers, safetensors, numpy, rich, datasets, math-verify, reasoning-gym,
accelerate; pytest for part 1; peft for part 4) must be importable; on a machine without network, vendor
their pure-Python wheels and install them with `pip install --no-deps --no-index WHEEL...` first (docs/gpu.md).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", "460"))  # the whole check stays under 8 minutes
QWEN05 = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
              intermediate_size=4864, vocab_size=151936)
TIMING = {"time_s", "step_time_s", "rollout_time_s", "tokens_per_s", "cuda_peak_alloc_gib", "cuda_peak_reserved_gib"}


def plan(device: str, tiny: bool) -> dict:
    """Shapes and sizes of every part for `device` ('cuda' or 'cpu'; tiny: the test suite's CPU run)."""
    if device == "cuda":
        return dict(mode="cuda", model=QWEN05, steps=20, prompts=8, group=8, new_tokens=256, bench_batch=64,
                    bench_tokens=512, small=dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                                 num_key_value_heads=2, intermediate_size=704, vocab_size=151936),
                    small_tokens=64)
    shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128)
    model = shape | dict(vocab_size=4096 if tiny else 32768)
    return dict(mode="cpu (GPU_CHECK_ALLOW_CPU=1): shapes scaled down (hidden 64, 2 layers, vocab "
                     f"{model['vocab_size']})" + (", tiny" if tiny else ""), model=model,
                steps=2 if tiny else 3, prompts=2, group=4, new_tokens=8 if tiny else 16, bench_batch=4 if tiny else 8,
                bench_tokens=8 if tiny else 32, small=shape | dict(vocab_size=4096), small_tokens=8)


class Report:
    """The JSON document, rewritten after every part."""

    def __init__(self, out: Path, head: dict):
        self.path = out / "gpu_check.json"
        self.doc = head | {"parts": {}}
        self.save()

    def part(self, name: str, result: dict) -> None:
        self.doc["parts"][name] = result
        self.save()
        print(f"[gpu-check] {name}: {json.dumps(result)[:600]}", flush=True)

    def save(self) -> None:
        self.path.write_text(json.dumps(self.doc, indent=1))


def qwen2_dir(path: Path, shape: dict, seed: int = 0) -> Path:
    """A random Qwen2 of `shape` with the built-in character tokenizer (ids the tokenizer lacks decode to
    nothing), saved like a user's model."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from lengthrl.models.loading import quiet_progress
    from lengthrl.models.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    cfg = Qwen2Config(**shape, max_position_embeddings=4096, rope_theta=1e6, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      use_sliding_window=False)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    with quiet_progress():
        model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def run_settings(model_dir: Path, p: dict, device: str, **kw) -> dict:
    return dict(model=str(model_dir), task="arith_chain", train_prompts=64, eval_prompts=0,
                prompts_per_step=p["prompts"], group_size=p["group"], max_new_tokens=p["new_tokens"],
                steps=p["steps"], checkpoint_every=0, sample_every=0, log_every=0, lr=1e-5, beta=0.0,
                device=device, dtype="bfloat16", seed=0) | kw


def train_rows(settings: dict, out: Path, resume: bool = False):
    from lengthrl.train.validate import build_config
    from lengthrl.train.loop import train

    tr = train(build_config(extra=settings), out, resume=resume, progress=False, evaluate=False)
    return tr, tr.metrics.rows()


def part_gpu_tests(has_cuda: bool, left: float) -> dict:
    if not has_cuda:
        return {"status": "skipped: no CUDA device (the -m gpu cases are the device fixture's cuda cases)"}
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONHASHSEED="0")
    try:
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(30.0, min(200.0, left)))
    except subprocess.TimeoutExpired as e:
        return {"status": "timeout", "seconds": time.perf_counter() - t0,
                "tail": (e.stdout or b"")[-2000:].decode() if isinstance(e.stdout, bytes) else str(e.stdout)[-2000:]}
    lines = [x for x in p.stdout.strip().splitlines() if x.strip()]
    return {"status": "ok" if p.returncode == 0 else f"failed (pytest exit {p.returncode})",
            "summary": lines[-1] if lines else "", "seconds": time.perf_counter() - t0,
            "tail": "" if p.returncode == 0 else (p.stdout[-3000:] + p.stderr[-1000:])}


def part_rl_steps(p: dict, device: str, work: Path) -> dict:
    from lengthrl.models.tiny import count_parameters

    d = qwen2_dir(work / "policy", p["model"])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tr, rows = train_rows(run_settings(d, p, device), work / "rl")
    later = rows[1:] if len(rows) > 1 else rows  # the first step includes warm-up (kernels, allocator)
    tok = [r["len/mean"] * p["prompts"] * p["group"] for r in later]
    upd = [r["step_time_s"] - r["rollout_time_s"] for r in later]
    out = {"status": "ok", "params_M": count_parameters(tr.model) / 1e6, "dtype": "bfloat16",
           "steps": len(rows), "batch": f"{p['prompts']} prompts x {p['group']}", "max_new_tokens": p["new_tokens"],
           "s_per_step": sum(r["step_time_s"] for r in later) / len(later),
           "rollout_tokens_per_s": sum(tok) / sum(r["rollout_time_s"] for r in later),
           "update_tokens_per_s": sum(tok) / max(sum(upd), 1e-9),
           "update_tokens_per_s_note": "response tokens / (step time - rollout time): verify, reward and update",
           "mean_response_len": sum(r["len/mean"] for r in rows) / len(rows),
           "finite": all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float)),
           "master_weights": str(next(tr.model.parameters()).dtype).removeprefix("torch."),
           "steps_timed": f"steps 2..{len(rows)} (step 1 is warm-up)" if len(rows) > 1 else "step 1"}
    if device == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    del tr
    return out


def part_rollout_engines(p: dict, device: str, work: Path) -> dict:
    from lengthrl.models import load_policy
    from lengthrl.rollout import FastEngine, SamplingParams
    from lengthrl.rollout.hf import left_pad

    d = work / "policy" if (work / "policy").is_dir() else qwen2_dir(work / "policy", p["model"])
    model, tok = load_policy(d, dtype="bfloat16", device=device)
    B, T = p["bench_batch"], p["bench_tokens"]
    n = 8 if B % 8 == 0 else 1
    prompts = [tok(f"compute: {i * 7 % 97}+{i * 13 % 89}*{i % 9 + 1} =")["input_ids"] for i in range(B // n)]
    never = model.config.vocab_size + 7  # a token id never sampled: every row runs to T tokens
    lean = FastEngine(model, tok, eos_token_ids=never)
    params = SamplingParams(temperature=1.0, max_new_tokens=T)
    ids, mask = left_pad(prompts, tok.pad_token_id)
    ids, mask = ids.repeat_interleave(n, 0).to(device), mask.repeat_interleave(n, 0).to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def run_lean():
        b = lean.generate(prompts, n, params)
        assert int(b.lengths.min()) == T
        return b

    def run_generate():
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, max_new_tokens=T, min_new_tokens=T, pad_token_id=tok.pad_token_id)
        assert out.shape[1] - ids.shape[1] == T

    times = {"lean": [], "generate": []}
    for fn in (run_lean, run_generate):  # warm-up
        fn()
    for _ in range(2):  # interleaved
        for k, fn in (("lean", run_lean), ("generate", run_generate)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {"status": "ok", "batch": B, "new_tokens": T, "dtype": "bfloat16 weights (both)",
            "lean_tokens_per_s": B * T / best["lean"], "hf_generate_tokens_per_s": B * T / best["generate"],
            "lean_x_generate": best["generate"] / best["lean"],
            "generate_config": "do_sample, temperature 1, top_k 0, top_p 1, min_new_tokens = max_new_tokens, "
                               "KV cache (transformers default), attn sdpa",
            "timing": "best of 2 interleaved runs after one warm-up each"}


def part_lora(p: dict, device: str, work: Path) -> dict:
    from lengthrl.train.config import FIELDS

    if "lora_r" not in FIELDS:
        return {"status": "skipped: LoRA not available (no lora_r config key in this build)"}
    try:
        import peft  # noqa: F401
    except ImportError:
        return {"status": "skipped: the peft package is not installed (vendor its wheel; docs/gpu.md)"}
    d = work / "small" if (work / "small").is_dir() else qwen2_dir(work / "small", p["small"])
    t0 = time.perf_counter()
    tr, rows = train_rows(run_settings(d, p, device, steps=2, lora_r=8, max_new_tokens=p["small_tokens"], lr=1e-3,
                                       beta=0.04), work / "lora")
    trainable = sum(x.numel() for x in tr.model.parameters() if x.requires_grad)
    total = sum(x.numel() for x in tr.model.parameters())
    return {"status": "ok", "steps": len(rows), "seconds": time.perf_counter() - t0,
            "trainable_params": trainable, "total_params": total,
            "finite": all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float)),
            "optimizer_steps": sum(r.get("optimizer_steps", 0) for r in rows)}


def part_resume(p: dict, device: str, work: Path) -> dict:
    from safetensors.torch import load_file

    d = work / "small" if (work / "small").is_dir() else qwen2_dir(work / "small", p["small"])
    kw = dict(steps=4, checkpoint_every=2, max_new_tokens=p["small_tokens"], lr=1e-3, beta=0.04)
    s = run_settings(d, p, device, **kw)
    _, full = train_rows(s, work / "uninterrupted")
    train_rows(s | {"steps": 2}, work / "resumed")
    _, resumed = train_rows(s, work / "resumed", resume=True)
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING}  # noqa: E731
    a, b = [strip(r) for r in full], [strip(r) for r in resumed]
    wa = load_file(str(work / "uninterrupted" / "final" / "model.safetensors"))
    wb = load_file(str(work / "resumed" / "final" / "model.safetensors"))
    diff = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    differing = sorted({k for x, y in zip(a, b) for k in x if x.get(k) != y.get(k)})
    return {"status": "ok", "steps": len(full), "checkpoint_at": 2, "equal": a == b and diff == 0.0,
            "metrics_equal": a == b, "differing_metrics": differing[:20], "max_abs_weight_diff": diff,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def main() -> int:
    out = os.environ.get("GPU_CHECK_OUT")
    if not out:
        print("gpu-check: set GPU_CHECK_OUT to the directory the JSON is written to", file=sys.stderr)
        return 2
    has_cuda = torch.cuda.is_available()
    if not has_cuda and os.environ.get("GPU_CHECK_ALLOW_CPU") != "1":
        print("gpu-check: no CUDA device; set GPU_CHECK_ALLOW_CPU=1 to run the CPU-runnable parts", file=sys.stderr)
        return 2
    device = "cuda" if has_cuda else "cpu"
    if has_cuda:  # deterministic cuBLAS for the resume part (set before the first CUDA call)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    tiny = os.environ.get("GPU_CHECK_TINY") == "1"
    p = plan(device, tiny)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    import transformers

    head = {"device": device, "mode": p["mode"], "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if has_cuda else None,
            "platform": platform.platform(), "cpus": os.cpu_count(), "budget_s": BUDGET_S,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rep = Report(outdir, head)
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-", dir=outdir))
    parts = [("gpu_tests", lambda left: part_gpu_tests(has_cuda, left)),
             ("rl_steps", lambda left: part_rl_steps(p, device, work)),
             ("rollout_engines", lambda left: part_rollout_engines(p, device, work)),
             ("lora", lambda left: part_lora(p, device, work)),
             ("resume", lambda left: part_resume(p, device, work))]
    ok = True
    for name, fn in parts:
        left = BUDGET_S - (time.perf_counter() - t_start)
        if left < 20:
            rep.part(name, {"status": f"skipped: time budget of {BUDGET_S:.0f} s spent"})
            continue
        t0 = time.perf_counter()
        try:
            res = fn(left)
        except Exception as e:  # a failing part is reported and the next one runs
            ok = False
            res = {"status": f"error: {type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        res.setdefault("seconds", time.perf_counter() - t0)
        if str(res.get("status", "")).startswith("failed"):
            ok = False
        rep.part(name, res)
        if has_cuda:
            torch.cuda.empty_cache()
    rep.doc["total_s"] = time.perf_counter() - t_start
    rep.save()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    print(f"[gpu-check] wrote {rep.path} in {rep.doc['total_s']:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
