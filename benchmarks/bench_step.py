"""A full RL step (rollout + scoring + update) of lengthrl vs TRL's GRPOTrainer, like for like.

Both sides: the same random model saved to one directory, the same arith_chain prompts and verifier (TRL's
reward function calls the task's scorer), prompts x G responses per step, max_new_tokens T, temperature 1, no
top-k/top-p, one update per batch (num_iterations 1), no KL (beta 0), AdamW at the same lr, the GRPO loss with
group z-score advantages, no gradient checkpointing on either side, the same dtype on both sides set
explicitly (TRL's GRPOConfig defaults to `bf16=True`, bf16 autocast: on a CPU without bf16 units that alone
makes its step about 5x slower, which is why an earlier version of this benchmark, float32 against TRL's
default, overstated the ratio several times over).

Two modes:
- natural: both sample until EOS; the trainers' responses drift to different lengths, so the headline is
  completion tokens per second (steps/s is printed too, but is not the same work);
- fixed: EOS suppressed on both sides (`SamplingParams.ignore_eos` on ours, `min_new_tokens = T` through
  `generation_kwargs` on TRL), so both generate exactly T tokens per response: equal work per step.

The trainers alternate step by step in one process (TRL's step callback runs our steps between its own),
after one warm-up step each; medians with min-max over the timed rounds.

Beside each ratio, the fraction of the machine's limit measured in the same run: the update's achieved FLOP/s
(6 x matmul parameters x real tokens, plus attention) against torch's matmul FLOP/s for the model's own GEMM
shapes at the same thread count, and the rollout's time against one batched forward over all generated
positions (what generation would cost if it were one parallel pass).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from benchmarks.common import RESULTS, machine, write
from lengthrl.models import save_tiny_random_model
from lengthrl.models.tokenizer import build_char_tokenizer
from lengthrl.train.config import TrainConfig
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer

# name -> model spec overrides, vocabulary size (None = the char tokenizer's), benchmark sizes
SHAPES = {
    "organism": dict(spec={}, vocab=None, prompts=4, G=8, T=48, rounds=5),
    "llama30m": dict(spec=dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=4, intermediate_size=1408,
                               max_position_embeddings=1024), vocab=32000, prompts=4, G=8, T=256, rounds=3),
}


def _tokenizer(vocab: int | None):
    tok = build_char_tokenizer()
    if vocab is not None and len(tok) < vocab:  # a 32k vocabulary: extra tokens, so the LM head has real size
        tok.add_tokens([f"<x{i}>" for i in range(vocab - len(tok))])
    return tok


def bf16_units() -> bool:
    """Whether this CPU has bf16 instructions (without them bf16 autocast is emulated and slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


class ParityTask:
    """arith_chain with a verifier that credits a response by the parity of its text's CRC32: a reward that
    varies within groups even when every response has the same length (the fixed-length mode, where a random
    model is never correct and every length term is equal), so that both trainers do a real update."""

    def __init__(self, task):
        self._task = task

    def __getattr__(self, name):
        return getattr(self._task, name)

    def score(self, sample, response):
        import zlib
        from dataclasses import replace as _replace

        sc = self._task.score(sample, response)
        ok = zlib.crc32(response.encode()) % 2 == 1
        return _replace(sc, reward=float(ok), correct=ok)


def lengthrl_trainer(model_dir, out, prompts, G, T, engine, steps, dtype="float32", ignore_eos=False, **keys):
    extra = dict(model=str(model_dir), task="arith_chain", train_prompts=256, eval_prompts=0,
                 prompts_per_step=prompts, group_size=G, max_new_tokens=T, loss="grpo",
                 advantage="grpo", lr=1e-4, steps=steps, checkpoint_every=0, sample_every=0,
                 log_every=0, rollout_engine=engine,
                 reward=[{"name": "correct"}, {"name": "dapo_overlong", "max_len": T,
                                               "cache_len": max(1, T // 3)}]) | keys
    if ignore_eos:  # every response reaches T without EOS: by default a truncated response is wrong with
        extra["truncated_correct"] = True  # reward 0, so the parity credit would never reach the reward (no update)
    if "dtype" in {f.name for f in fields(TrainConfig)}:
        extra["dtype"] = dtype
    elif dtype != "float32":
        raise RuntimeError("this lengthrl has no dtype key")
    tr = Trainer(build_config(extra=extra), out, progress=False)
    if ignore_eos:
        tr.params = replace(tr.params, ignore_eos=True)
        tr.task = ParityTask(tr.task)
    return tr


class _StepTimes:
    """A TRL callback recording the wall time of every optimizer step, then running `between()` (outside the
    timed span): the lengthrl steps, so the trainers alternate step by step under the same machine load."""

    def __init__(self, between=lambda: None):
        from transformers import TrainerCallback

        outer = self

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                outer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                outer.times.append(time.perf_counter() - outer.t0)
                between()

        self.times: list[float] = []
        self.callback = CB()


def trl_args(out, prompts, G, T, steps, dtype, fixed) -> dict:
    """TRL's GRPOConfig for the comparison; every key that changes the work is set explicitly."""
    return dict(output_dir=str(out), per_device_train_batch_size=prompts * G, num_generations=G,
                max_completion_length=T, temperature=1.0, top_k=0, top_p=1.0, beta=0.0, loss_type="grpo",
                scale_rewards="group", num_iterations=1, learning_rate=1e-4, max_steps=steps, use_cpu=True,
                bf16=dtype == "bfloat16", fp16=False, gradient_checkpointing=False, logging_steps=1,
                report_to="none", save_strategy="no", disable_tqdm=True, seed=0,
                generation_kwargs={"min_new_tokens": T} if fixed else None)


def trl_trainer(model_dir, args: dict, between=lambda: None, parity: bool = False):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from lengthrl.integrations.trl import length_reward_func
    from lengthrl.tasks import get_task

    task = get_task("arith_chain")
    samples = task.samples("train", 256, seed=0)
    if parity:
        task = ParityTask(task)
    by_prompt = {s.prompt: s for s in samples}

    def reward(prompts, completions, **kw):  # the same verifier as lengthrl's scoring
        return [float(task.score(by_prompt[p], c).reward) for p, c in zip(prompts, completions)]

    ds = Dataset.from_list([{"prompt": s.prompt} for s in samples])
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # master weights float32
    rec = _StepTimes(between)
    # a length term on both sides, so that groups differ and both trainers really update (lengthrl skips the
    # optimizer step when every advantage is zero; a random model is never correct)
    G, T = args["num_generations"], args["max_completion_length"]
    overlong = length_reward_func("dapo_overlong", None, group_size=G, max_len=T, cache_len=max(1, T // 3))
    tr = GRPOTrainer(model=model, reward_funcs=[reward, overlong], args=GRPOConfig(**args), train_dataset=ds,
                     processing_class=tok, callbacks=[rec.callback])
    return tr, rec


# ---- the machine's limit -------------------------------------------------------------------------------------

def gemm_shapes(cfg) -> list[tuple[int, int]]:
    """(in, out) of every matmul a decoder layer and the LM head do per token (Llama/Qwen2)."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    layer = [(d, d), (d, kv), (d, kv), (d, d), (d, f), (d, f), (f, d)]
    return layer * cfg.num_hidden_layers + [(d, cfg.vocab_size)]


def update_flops(cfg, seq_lens: list[int]) -> float:
    """Forward + backward FLOPs of the update over real (unpadded) tokens: 6 x matmul parameters per token plus
    causal attention (QK^T and AV: 2 x 2 x d x ctx per layer per token forward, x3 with the backward)."""
    per_tok = 6 * sum(i * o for i, o in gemm_shapes(cfg))
    attn = sum(12 * cfg.num_hidden_layers * cfg.hidden_size * (n * (n + 1) / 2) for n in seq_lens)
    return per_tok * sum(seq_lens) + attn


def matmul_rate(cfg, tokens: int, repeats: int = 3) -> float:
    """torch's float32 matmul FLOP/s for the model's GEMM shapes at `tokens` rows (this thread count)."""
    shapes = sorted(set(gemm_shapes(cfg)))
    total_f = total_t = 0.0
    for i, o in shapes:
        a, b = torch.randn(tokens, i), torch.randn(i, o)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        n = sum(1 for s in gemm_shapes(cfg) if s == (i, o))
        total_f += n * 2 * tokens * i * o
        total_t += n * best
    return total_f / total_t


def batched_forward_s(model, B: int, L: int, repeats: int = 3) -> float:
    """Seconds of one no-grad forward over [B, L] tokens: generation's parallel bound."""
    ids = torch.randint(0, model.config.vocab_size, (B, L))
    with torch.no_grad():
        model(input_ids=ids)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            best = min(best, time.perf_counter() - t0)
    return best


# ---- the benchmark --------------------------------------------------------------------------------------------

def _summary(xs: list[float]) -> dict:
    s = sorted(xs)
    return {"median": s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2,
            "min": s[0], "max": s[-1], "n": len(s)}


def run_mode(model_dir, tmp, shape: str, mode: str, dtype: str, prompts, G, T, rounds, engines) -> dict:
    fixed = mode == "fixed"
    N = prompts * G
    ours = {e: lengthrl_trainer(model_dir, tmp / f"ours_{shape}_{mode}_{dtype}_{e}", prompts, G, T, e, rounds + 1,
                                dtype=dtype, ignore_eos=fixed) for e in engines}
    rec_ours = {f"lengthrl_{e}": {"step_s": [], "tokens": [], "rollout_s": [], "optimizer_steps": []} for e in ours}

    def ours_round():  # one lengthrl step per engine after every TRL step; the first round is the warm-up
        for e, tr in ours.items():
            t0 = time.perf_counter()
            m = tr.train_step()
            dt = time.perf_counter() - t0
            tr.step += 1
            if tr.step > 1:
                r = rec_ours[f"lengthrl_{e}"]
                r["step_s"].append(dt)
                r["tokens"].append(m["len/mean"] * N)
                r["rollout_s"].append(m["rollout_time_s"])
                r["optimizer_steps"].append(m.get("optimizer_steps", 0))

    args = trl_args(tmp / f"trl_{shape}_{mode}_{dtype}", prompts, G, T, rounds + 1, dtype, fixed)
    trl, rec = trl_trainer(model_dir, args, between=ours_round, parity=fixed)
    trl.train()
    hist = [h for h in trl.state.log_history if "completions/mean_length" in h]
    sides = dict(rec_ours)
    sides["trl_grpo"] = {"step_s": rec.times[1:], "tokens": [h["completions/mean_length"] * N for h in hist[1:]]}
    out = {"trl_config": {k: v for k, v in args.items() if k not in ("output_dir",)}, "sides": {}}
    for k, r in sides.items():
        tps = [t / s for t, s in zip(r["tokens"], r["step_s"])]
        out["sides"][k] = {"s_per_step": _summary(r["step_s"]), "completion_tokens_per_s": _summary(tps),
                           "mean_len": sum(r["tokens"]) / max(len(r["tokens"]), 1) / N,
                           **({"rollout_s": _summary(r["rollout_s"])} if "rollout_s" in r else {})}
        if "optimizer_steps" in r:  # equal work: every timed step of ours must update, as TRL's do
            out["sides"][k]["optimizer_steps"] = r["optimizer_steps"]
            if not all(r["optimizer_steps"]):
                out["sides"][k]["unequal_work"] = "some timed steps took no optimizer step (no signal)"
                print(f"    WARNING {k}: {r['optimizer_steps'].count(0)} of {len(r['optimizer_steps'])} timed steps "
                      "took no optimizer step: not the same work as TRL's", flush=True)
    base = out["sides"]["trl_grpo"]
    for k, s in out["sides"].items():
        s["x_trl_tokens_per_s"] = s["completion_tokens_per_s"]["median"] / base["completion_tokens_per_s"]["median"]
        s["x_trl_steps_per_s"] = base["s_per_step"]["median"] / s["s_per_step"]["median"]
    return out


def limits(model_dir, res: dict, prompts, G, T, prompt_len: int) -> dict:
    """Fractions of the machine's limit for the default engine's fixed-length (or natural) run."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    cfg = model.config
    mode = "fixed" if "fixed" in res else "natural"
    side = res[mode]["sides"]["lengthrl_fast"]
    N = prompts * G
    resp = side["mean_len"]
    seq_lens = [int(prompt_len + resp)] * N
    upd_s = side["s_per_step"]["median"] - side["rollout_s"]["median"]
    achieved = update_flops(cfg, seq_lens) / max(upd_s, 1e-9)
    rate = matmul_rate(cfg, tokens=min(sum(seq_lens), 4096))
    fwd = batched_forward_s(model, N, int(prompt_len + resp))
    return {"mode": mode, "params": sum(p.numel() for p in model.parameters()), "update_s": upd_s, "update_flops_per_s": achieved, "matmul_flops_per_s": rate,
            "update_frac_of_matmul": achieved / rate, "rollout_s": side["rollout_s"]["median"],
            "batched_forward_s": fwd, "rollout_x_batched_forward": side["rollout_s"]["median"] / fwd}


def run(quick: bool = False, shapes: str | None = None, dtypes: str | None = None) -> dict:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    names = (shapes or os.environ.get("BENCH_STEP_SHAPES") or ("organism" if quick else "organism,llama30m")).split(",")
    want = (dtypes or "float32,bfloat16").split(",")
    tmp = Path(tempfile.mkdtemp(prefix="lengthrl-bench-step-"))
    result = {"shapes": {}, "bf16_units": bf16_units()}
    for shape in names:
        c = SHAPES[shape]
        prompts, G, T = c["prompts"], c["G"], c["T"]
        rounds = int(os.environ.get("BENCH_STEP_ROUNDS") or c["rounds"])  # timed rounds after the warm-up
        if quick:
            T, rounds = min(T, 16), 2
        tok = _tokenizer(c["vocab"])
        model_dir = save_tiny_random_model(tmp / f"model_{shape}", arch="llama", seed=0, tokenizer=tok, **c["spec"])
        engines = ("fast", "hf") if shape == "organism" and not quick else ("fast",)
        modes = ("natural", "fixed") if shape == "organism" else ("fixed",)
        res: dict = {"config": {"prompts": prompts, "group_size": G, "max_new_tokens": T, "rounds_timed": rounds,
                                "engines": list(engines), "vocab": len(tok), **c["spec"]}}
        for dtype in want:
            if dtype == "bfloat16" and not bf16_units():
                res["bfloat16"] = "skipped: this CPU has no bf16 units (avx512_bf16/amx_bf16), so bf16 autocast " \
                                  "would be emulated on both sides"
                print(f"  [{shape}] bfloat16: {res['bfloat16']}", flush=True)
                continue
            key = "" if dtype == "float32" else "_bf16"
            for mode in modes:
                r = run_mode(model_dir, tmp, shape, mode, dtype, prompts, G, T, rounds, engines)
                res[mode + key] = r
                print(f"  [{shape}, {mode}, {dtype}] TRL config: " + ", ".join(
                    f"{k}={v}" for k, v in r["trl_config"].items() if k in (
                        "bf16", "num_generations", "max_completion_length", "generation_kwargs",
                        "gradient_checkpointing", "loss_type", "top_k", "top_p", "num_iterations")), flush=True)
                for k, s in r["sides"].items():
                    tps = s["completion_tokens_per_s"]
                    print(f"    {k:14s} {tps['median']:8.1f} tok/s (min {tps['min']:.1f}, max {tps['max']:.1f}), "
                          f"{s['s_per_step']['median']:.2f} s/step, mean len {s['mean_len']:.1f}: "
                          f"{s['x_trl_tokens_per_s']:.2f}x TRL tokens/s, {s['x_trl_steps_per_s']:.2f}x steps/s",
                          flush=True)
        from lengthrl.tasks import get_task

        ps = get_task("arith_chain").samples("train", 256, seed=0)
        prompt_len = round(sum(len(tok(s.prompt)["input_ids"]) for s in ps) / len(ps))  # mean prompt tokens
        lim = limits(model_dir, res, prompts, G, T, prompt_len)
        res["limit"] = lim
        print(f"    {lim['params'] / 1e6:.1f}M parameters; limit ({lim['mode']}): update {lim['update_flops_per_s'] / 1e9:.1f} GFLOP/s = "
              f"{lim['update_frac_of_matmul']:.0%} of the matmul rate ({lim['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s); "
              f"rollout {lim['rollout_x_batched_forward']:.1f}x one batched forward", flush=True)
        res["machine"] = machine()  # per shape: the shapes may run at different times
        result["shapes"][shape] = res
    # a run of some shapes (BENCH_STEP_SHAPES) keeps the other shapes' last results in the file
    old = RESULTS / "rl_step.json"
    if not quick and old.is_file():
        import json

        prev = json.loads(old.read_text())
        kept = {k: {"machine": prev.get("machine")} | v for k, v in prev.get("shapes", {}).items()
                if k not in result["shapes"]}
        result["shapes"] = kept | result["shapes"]
    write("rl_step_quick" if quick else "rl_step", result)  # a smoke run never replaces the results
    return result
