"""Device and precision (docs/gpu.md): the `device`, `dtype` and `attn_implementation` keys, device-correct
rollouts, log-probs, updates and runs (the `device` fixture: cpu, and cuda where it exists, `-m gpu`), mixed
precision with float32 master weights, CUDA random states in checkpoints, and the GPU check's CPU mode."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.models import load_policy, save_tiny_random_model
from lengthrl.rollout import SamplingParams, compute_logprobs, make_engine
from lengthrl.train import checkpoint as ckpt
from lengthrl.train.config import describe
from lengthrl.train.validate import build_config
from lengthrl.train.device import Precision, effective_dtype_name, resolve_device, resolve_dtype
from lengthrl.train.loop import Trainer, train
from lengthrl.train.update import LossStats, UpdateBatch, make_optimizer, ppo_update
from runkit import MICRO, SRC

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)


def run_cfg(model_dir, **kw):
    base = dict(model=str(model_dir), task="arith_chain", train_prompts=16, eval_prompts=0, prompts_per_step=2,
                group_size=4, max_new_tokens=12, steps=3, checkpoint_every=0, sample_every=0, log_every=0,
                lr=1e-3, threads=1)
    return build_config(extra=base | kw)


# ---- config keys ---------------------------------------------------------------------------------------------
def test_config_show_lists_the_device_keys():
    keys = {row[0]: row for row in describe()}
    for k in ("device", "dtype", "attn_implementation", "lora_r"):
        assert k in keys and keys[k][3]
    assert keys["device"][2] == "'auto'" and keys["dtype"][2] == "'auto'" and keys["attn_implementation"][2] == "'sdpa'"
    # the command itself prints them
    p = subprocess.run([sys.executable, "-m", "lengthrl", "config", "show"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=SRC, COLUMNS="200"), timeout=120)
    assert p.returncode == 0, p.stderr
    for k in ("device", "dtype", "attn_implementation", "lora_r"):
        assert k in p.stdout, k


def test_auto_is_cpu_float32_without_cuda():
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")
        assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


@pytest.mark.parametrize("extra, match", [
    (dict(device="gpu"), "config key 'device'.*'gpu'.*valid"),
    (dict(device="cuda:x"), "config key 'device'"),
    (dict(dtype="fp8"), "config key 'dtype'.*valid: auto, float32, bfloat16, float16"),
    (dict(attn_implementation="flash"), "config key 'attn_implementation'.*valid"),
    (dict(dist_strategy="fsdp", dtype="float16", fsdp_param_dtype="bfloat16"), "'dtype'.*'fsdp_param_dtype'.*disagree"),
])
def test_bad_values_name_the_key(micro_dir, extra, match):
    with pytest.raises(ConfigError, match=match):
        run_cfg(micro_dir, **extra)


def test_fsdp_param_dtype_is_the_fsdp_form_of_dtype(micro_dir):
    cfg = run_cfg(micro_dir, dist_strategy="fsdp", fsdp_param_dtype="bfloat16")  # an old config keeps working
    assert effective_dtype_name(cfg.dtype, cfg.fsdp_param_dtype) == "bfloat16"
    from lengthrl.train.device import fsdp_param_dtype

    assert fsdp_param_dtype(cfg) == "bfloat16"
    assert fsdp_param_dtype(run_cfg(micro_dir, dist_strategy="fsdp", dtype="bfloat16")) == "bfloat16"
    assert fsdp_param_dtype(run_cfg(micro_dir, dtype="bfloat16")) is None  # DDP / one process: autocast


def test_flash_attention_without_the_package_is_a_clear_error(micro_dir):
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    with pytest.raises(ConfigError, match="flash_attention_2.*flash-attn.*not installed.*sdpa"):
        run_cfg(micro_dir, attn_implementation="flash_attention_2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_exits_2_with_one_line(micro_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.run([sys.executable, "-m", "lengthrl", "train", "--set", f"model={micro_dir}", "--set",
                        "device=cuda", "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env,
                       timeout=120)
    lines = [x for x in p.stderr.strip().splitlines() if x.strip()]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and "'device'" in lines[0] and "CUDA" in lines[0] and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "r").exists()  # nothing started


def test_attn_implementation_reaches_the_model(micro_dir, tmp_path):
    tr = Trainer(run_cfg(micro_dir, attn_implementation="eager", steps=1), tmp_path, progress=False)
    assert tr.model.config._attn_implementation == "eager"


# ---- device-correct rollouts, log-probs, updates and runs -----------------------------------------------------
@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return save_tiny_random_model(tmp_path_factory.mktemp("small"), arch="qwen2", seed=3, **SMALL)


@pytest.mark.parametrize("engine", ["hf", "fast"])
def test_rollout_on_the_device(small_dir, device, engine):
    """Both engines sample on the model's device (generator there) and return one host batch; greedy decoding
    agrees with the CPU's."""
    model, tok = load_policy(small_dir, device=device)
    prompts = [tok(t).input_ids for t in ("sort: 93\n", "count a in: abca\n")]
    eng = make_engine(engine, model, tok, seed=0)
    assert eng.generator.device.type == torch.device(device).type
    b = eng.generate(prompts, 3, SamplingParams(temperature=1.0, max_new_tokens=8))
    assert b.response_ids.device.type == "cpu" and b.response_ids.shape[0] == 6
    assert bool((b.logp <= 0).all()) and torch.isfinite(b.logp).all()
    greedy = eng.generate(prompts, 1, SamplingParams(temperature=0.0, max_new_tokens=8))
    cpu_model, _ = load_policy(small_dir)
    ref = make_engine(engine, cpu_model, tok, seed=0).generate(prompts, 1, SamplingParams(temperature=0.0,
                                                                                            max_new_tokens=8))
    assert torch.equal(greedy.response_ids, ref.response_ids)
    torch.testing.assert_close(greedy.logp, ref.logp, atol=1e-4, rtol=0)


def test_lean_decoder_mask_free_path_equals_the_masked_one(small_dir):
    """Prompts without padding take SDPA's is_causal / mask-free calls: the same rollouts as with masks."""
    from lengthrl.rollout.fast import LeanDecoder

    model, tok = load_policy(small_dir)
    ids = torch.tensor([tok("sort: 93\n").input_ids] * 2)
    mask = torch.ones_like(ids)
    dec = LeanDecoder(model)
    P = ids.shape[1]
    c1, c2 = dec.new_cache(2, P + 1, "cpu", torch.float32), dec.new_cache(2, P + 1, "cpu", torch.float32)
    free = dec.prefill(ids, mask, c1)
    causal = torch.ones(P, P, dtype=torch.bool).tril()
    masked = dec._run(ids, (mask.cumsum(-1) - 1), c2, slice(0, P), P, causal[None, None].expand(2, 1, P, P))
    torch.testing.assert_close(free, masked, atol=1e-6, rtol=0)
    tok1 = free.argmax(-1)
    pos = mask.sum(-1)
    a = dec.step(tok1, pos, c1, P, None)
    b = dec.step(tok1, pos, c2, P, torch.ones(2, 1, 1, P + 1, dtype=torch.bool))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_logprobs_and_update_on_the_device(small_dir, device):
    """compute_logprobs on a device batch, then one ppo_update: accumulators, metrics and the step there."""
    model, tok = load_policy(small_dir, device=device)
    g = torch.Generator().manual_seed(0)
    B, P, T = 8, 3, 6
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    rmask = (torch.arange(T)[None] < lengths[:, None]).long()
    ub = UpdateBatch(prompt_ids=torch.randint(4, 60, (B, P), generator=g), prompt_mask=torch.ones(B, P, dtype=torch.long),
                     response_ids=torch.randint(4, 60, (B, T), generator=g) * rmask, response_mask=rmask,
                     loss_mask=rmask.float(), advantages=torch.randn(B, generator=g),
                     group_index=torch.arange(B) // 4).to(device)
    assert ub.advantages.device.type == torch.device(device).type
    lp, ent = compute_logprobs(model, ub.prompt_ids, ub.prompt_mask, ub.response_ids, ub.response_mask,
                               return_entropy=True)
    assert lp.dtype == torch.float32 and lp.requires_grad and not ent.requires_grad  # entropy: a metric
    cfg = run_cfg(small_dir, micro_batch_size=3, mini_batches=2)
    opt, sched = make_optimizer(model, cfg, 2)
    before = [p.detach().clone() for p in model.parameters()]
    m = ppo_update(model, opt, sched, ub, cfg, torch.Generator().manual_seed(1),
                   precision=Precision(torch.device(device), torch.float32)).metrics
    assert m["optimizer_steps"] == 2 and all(isinstance(v, (int, float)) for v in m.values())
    assert math.isfinite(m["loss"]) and m["entropy"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_loss_stats_reduce_on_the_device_as_python_floats_did(device):
    """LossStats folds metrics in on the device; the values are those of the float64 host sums it replaced."""
    rows = [{"ratio_mean": torch.tensor(1.25), "ratio_max": torch.tensor(3.0), "tokens": torch.tensor(4.0),
             "seqs": torch.tensor(2.0)},
            {"ratio_mean": torch.tensor(float("nan")), "ratio_max": torch.tensor(9.0), "tokens": torch.tensor(0.0),
             "seqs": torch.tensor(0.0)},  # no weight: contributes nothing
            {"ratio_mean": torch.tensor(0.5), "ratio_max": torch.tensor(1.0), "tokens": torch.tensor(2.0),
             "seqs": torch.tensor(1.0)}]
    st = LossStats(seq_level=False)
    for r in rows:
        st.add({k: v.to(device) for k, v in r.items()})
    from lengthrl.train.distributed import SINGLE

    out = st.reduce(SINGLE)
    assert out == {"ratio_mean": (1.25 * 4 + 0.5 * 2) / 6, "ratio_max": 3.0}


def test_a_run_on_the_device(micro_dir, tmp_path, device):
    """Two steps with a reference model (beta > 0) and two mini-batches, then a resume: finite metrics, the
    reference on the device, resumed metrics equal to the uninterrupted run's."""
    kw = dict(device=device, beta=0.04, mini_batches=2, steps=3, checkpoint_every=2)
    tr = train(run_cfg(micro_dir, **kw), tmp_path / "a", progress=False, evaluate=False)
    assert next(tr.ref.parameters()).device.type == torch.device(device).type
    assert next(tr.model.parameters()).device.type == torch.device(device).type
    full = tr.metrics.rows()
    assert all(math.isfinite(v) for r in full for v in r.values() if isinstance(v, float))
    train(run_cfg(micro_dir, **kw | dict(steps=2)), tmp_path / "b", progress=False, evaluate=False)
    resumed = train(run_cfg(micro_dir, **kw), tmp_path / "b", resume=True, progress=False, evaluate=False).metrics.rows()
    timing = {"time_s", "step_time_s", "rollout_time_s", "tokens_per_s", "cuda_peak_alloc_gib", "cuda_peak_reserved_gib"}
    strip = lambda r: {k: v for k, v in r.items() if k not in timing}  # noqa: E731
    assert [strip(r) for r in resumed] == [strip(r) for r in full]


def test_diffusion_rollout_and_logprobs_on_the_device(device, tmp_path):
    """The diffusion engine samples on the model's device (canvas, masks and generator there) and the AR-order
    log-probs recomputed on the device equal the rollout's."""
    from lengthrl.dllm.adapter import DiffusionEngine, DiffusionLogprobs, load
    from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, save_diffusion_model, tiny_diffusion_model

    tok0 = char_tokenizer()
    cfg = TinyDiffusionConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=32)
    model, tok = load(save_diffusion_model(tiny_diffusion_model(tok0, cfg, seed=0), tok0, tmp_path / "d"))
    model.to(device)
    eng = DiffusionEngine(model, tok, seed=0)
    assert eng.generator.device.type == torch.device(device).type
    prompts = [tok("1+2=")["input_ids"], tok("10+2=")["input_ids"]]
    b = eng.generate(prompts, 3, SamplingParams(temperature=1.0, max_new_tokens=5))
    assert b.response_ids.device.type == "cpu" and b.response_ids.shape[0] == 6
    fn = DiffusionLogprobs(tok.mask_token_id, tok.pad_token_id, 5)
    lp, ent = fn(model, b.prompt_ids.to(device), b.prompt_mask.to(device), b.response_ids.to(device),
                 b.response_mask.to(device), return_entropy=True)
    torch.testing.assert_close(lp.cpu(), b.logp, atol=1e-5, rtol=0)
    assert lp.device.type == torch.device(device).type and not ent.requires_grad


# ---- precision -------------------------------------------------------------------------------------------------
def test_bfloat16_run_trains_with_float32_master_weights(micro_dir, tmp_path, device):
    """`--set dtype=bfloat16`: 3 steps with finite metrics; the weights and AdamW moments stay float32; the
    rollouts really computed in bfloat16 (log-probs differ from a float32 forward)."""
    tr = train(run_cfg(micro_dir, dtype="bfloat16", device=device, beta=0.04), tmp_path, progress=False,
               evaluate=False)  # beta > 0: an optimizer step every step, whatever the rewards
    rows = tr.metrics.rows()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    assert sum(r["optimizer_steps"] for r in rows) >= 1
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())
    moments = [s["exp_avg"] for s in tr.opt.state.values()]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float32 for v in load_file(tmp_path / "final" / "model.safetensors").values())
    # bf16 compute: the engine's log-probs under autocast are not the float32 ones
    prompts = [tr.tok("1+2\n").input_ids]
    p = SamplingParams(temperature=1.0, max_new_tokens=6, seed=0)
    with tr.precision.autocast():
        lo = tr.engine.generate(prompts, 2, p)
    hi = tr.engine.generate(prompts, 2, p)
    assert tr.precision.mixed and not torch.equal(lo.logp, hi.logp)


def test_float16_uses_a_loss_scale(micro_dir, tmp_path):
    tr = train(run_cfg(micro_dir, dtype="float16", steps=2, beta=0.04), tmp_path, progress=False, evaluate=False)
    rows = tr.metrics.rows()
    assert tr.scaler is not None and all(math.isfinite(r["loss"]) for r in rows)
    assert all("loss_scale" in r for r in rows if r["optimizer_steps"] or r.get("loss_scale_skips"))
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())


# ---- CUDA random states in checkpoints ------------------------------------------------------------------------
def test_rng_state_has_the_cuda_part_only_with_cuda(monkeypatch, caplog):
    s = ckpt.rng_state()
    assert ("cuda" in s) == torch.cuda.is_available()
    ckpt.set_rng_state(s)  # round trip on this machine
    if torch.cuda.is_available():
        return
    # a state written on a CUDA machine: restored there, skipped cleanly here
    fake = [torch.zeros(16, dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake)
    s = ckpt.rng_state()
    assert s["cuda"] is fake
    restored = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda st, device: restored.append((st, device)))
    ckpt.set_rng_state(s)
    assert restored == [(fake[0], 0)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    import logging

    with caplog.at_level(logging.INFO, logger="lengthrl.train"):
        ckpt.set_rng_state(s)
    assert "CUDA random states" in caplog.text and "not restored" in caplog.text


# ---- the GPU check's CPU mode ---------------------------------------------------------------------------------
def test_gpu_check_cpu_mode_runs_and_says_so(tmp_path):
    """`make gpu-check` with GPU_CHECK_ALLOW_CPU=1 on a tiny shape: every part reports, JSON written, and the
    JSON says it ran on the CPU with scaled-down shapes."""
    env = dict(os.environ, PYTHONPATH=SRC, GPU_CHECK_OUT=str(tmp_path), GPU_CHECK_ALLOW_CPU="1",
               GPU_CHECK_TINY="1", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                       env=env, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["device"] == "cpu" and res["mode"].startswith("cpu") and "scaled down" in res["mode"]
    for part in ("gpu_tests", "rl_steps", "rollout_engines", "lora", "resume"):
        assert part in res["parts"], part
    assert res["parts"]["gpu_tests"]["status"].startswith("skipped")
    rl = res["parts"]["rl_steps"]
    assert rl["status"] == "ok" and rl["s_per_step"] > 0 and rl["rollout_tokens_per_s"] > 0 and rl["steps"] >= 2
    eng = res["parts"]["rollout_engines"]
    assert eng["status"] == "ok" and eng["lean_tokens_per_s"] > 0 and eng["hf_generate_tokens_per_s"] > 0
    assert res["parts"]["resume"]["status"] == "ok" and res["parts"]["resume"]["equal"] is True
    assert res["parts"]["lora"]["status"] in ("ok",) or res["parts"]["lora"]["status"].startswith("skipped")
