"""Rollout tokens/s: FastEngine and HFEngine vs a plain no-cache loop vs transformers `model.generate`.

Every engine samples exactly T tokens per row (EOS is never a stop token here), temperature 1, so all do the
same work; tokens/s = rows x T / seconds. Ratios are against `model.generate` measured in the same process.
"""

from __future__ import annotations

import torch

from benchmarks.common import interleaved, med, table, write
from benchmarks.models import build, prompts
from lengthrl.rollout import FastEngine, HFEngine, SamplingParams
from lengthrl.rollout.hf import left_pad

NO_EOS = 10**6  # a token id that is never sampled: every row runs to max_new_tokens


def hf_generate(model, tok, p_ids, n, T):
    """transformers `generate` on the left-padded prompts repeated n times (sampling, KV cache)."""
    ids, mask = left_pad(p_ids, tok.pad_token_id)
    ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)

    def run():
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                           max_new_tokens=T, min_new_tokens=T, pad_token_id=tok.pad_token_id)
    return run


def engine_run(engine, p_ids, n, T):
    params = SamplingParams(temperature=1.0, max_new_tokens=T)
    return lambda: engine.generate(p_ids, n, params)


CONFIGS = {  # shape -> [(prompts, n, T)], batch = prompts x n
    "organism": [(2, 8, 32), (8, 8, 64), (16, 8, 64)],
    "llama30m": [(1, 8, 32), (2, 8, 32)],
}
NO_CACHE = {(512, "organism"), (4096, "organism"), (256, "llama30m")}  # (rows x T, model) run without cache
QUICK = {"organism": [(2, 8, 32), (8, 8, 64)], "llama30m": [(1, 8, 16)]}


def run(quick: bool = False, repeats: int = 2) -> dict:
    rows = []
    for shape, cfgs in (QUICK if quick else CONFIGS).items():
        model, tok, n_params = build(shape)
        for n_prompts, n, T in cfgs:
            p_ids = prompts(tok, n_prompts)
            fns = {
                "lengthrl_fast": engine_run(FastEngine(model, tok, eos_token_ids=NO_EOS), p_ids, n, T),
                "lengthrl_hf": engine_run(HFEngine(model, tok, eos_token_ids=NO_EOS), p_ids, n, T),
                "hf_generate": hf_generate(model, tok, p_ids, n, T),
            }
            if (n_prompts * n * T, shape) in NO_CACHE:  # the quadratic loop only where it finishes in time
                fns["no_cache_loop"] = engine_run(HFEngine(model, tok, eos_token_ids=NO_EOS, use_cache=False),
                                                  p_ids, n, T)
            times = interleaved(fns, repeats)
            toks = n_prompts * n * T
            row = {"model": shape, "params_M": n_params / 1e6, "batch": n_prompts * n, "T": T}
            for k, ts in times.items():
                row[f"{k}_tok_s"] = toks / med(ts)
            base = row["hf_generate_tok_s"]
            for k in times:
                row[f"{k}_x_generate"] = row[f"{k}_tok_s"] / base
            rows.append(row)
            print(f"  rollout {shape} B={n_prompts * n} T={T}: fast {row['lengthrl_fast_x_generate']:.2f}x, "
                  f"hf engine {row['lengthrl_hf_x_generate']:.2f}x, no-cache loop "
                  f"{row.get('no_cache_loop_x_generate', float('nan')):.2f}x of model.generate "
                  f"({row['hf_generate_tok_s']:.0f} tok/s)", flush=True)
    cols = ["model", "batch", "T", "lengthrl_fast_tok_s", "lengthrl_hf_tok_s", "hf_generate_tok_s",
            "no_cache_loop_tok_s", "lengthrl_fast_x_generate", "lengthrl_hf_x_generate", "no_cache_loop_x_generate"]
    print(table(rows, cols))
    write("rollout", {"repeats": repeats, "rows": rows})
    return {"rows": rows}
