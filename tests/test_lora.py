"""LoRA policies (lengthrl.models.lora, config keys lora_*): only the adapter trains and is checkpointed, resume is
bitwise, the KL reference is the base model, the merged model equals base + adapter, the lean decoder samples
the adapted policy."""

from __future__ import annotations

import json

import pytest
import torch
from runkit import rows
from safetensors.torch import load_file

from lengthrl.errors import ConfigError
from lengthrl.models import load_policy, lora
from lengthrl.rollout import FastEngine, HFEngine, SamplingParams, compute_logprobs
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, train

peft = pytest.importorskip("peft")


def settings(model_dir, **kw) -> dict:
    base = dict(model=str(model_dir), task="arith_chain", train_prompts=16, eval_prompts=0, prompts_per_step=2,
                group_size=4, max_new_tokens=8, steps=3, checkpoint_every=1, keep_checkpoints=3, sample_every=1,
                log_every=0, lr=2e-2, threads=1, seed=0, beta=0.05,
                reward=[{"name": "correct", "weight": 1.0}, {"name": "kimi", "weight": 1.0}])  # a length signal
    return base | lora.lora_settings(r=4, alpha=8.0, target_modules=["q_proj", "v_proj", "down_proj"]) | kw


def run(kw: dict, out, resume: bool = False) -> Trainer:
    threads = torch.get_num_threads()
    try:
        return train(build_config(extra=kw), out, resume=resume, progress=False, evaluate=False)
    finally:
        torch.set_num_threads(threads)


def _adapted(model, r=4, seed=1):
    """The model wrapped with a LoRA adapter whose B is random (a fresh adapter is the identity: B = 0)."""
    cfg = build_config(extra=lora.lora_settings(r=r, alpha=8.0, target_modules=["q_proj", "v_proj", "up_proj"]))
    pm = lora.wrap(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return pm


def _batch(V, B=4, P=5, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    pm = torch.ones(B, P, dtype=torch.long)
    pm[0, :2] = 0
    rm = torch.ones(B, T, dtype=torch.long)
    rm[1, 3:] = 0
    return (torch.randint(3, V, (B, P), generator=g), pm, torch.randint(3, V, (B, T), generator=g), rm)


def test_three_steps_train_only_the_adapter(micro_dir, tmp_path, device):
    tr = run(settings(micro_dir, device=device), tmp_path / "a")
    start = load_file(f"{micro_dir}/model.safetensors")
    assert [r["step"] for r in rows(tmp_path / "a")] == [1, 2, 3]
    assert all(r["optimizer_steps"] == 1 for r in rows(tmp_path / "a"))
    trainable = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    n_opt = sum(len(g["params"]) for g in tr.opt.param_groups)
    assert n_opt == len(trainable)  # the optimizer holds the adapter only
    for n, p in lora.base_model(tr.model).state_dict().items():
        if "lora_" in n:
            continue
        name = n.replace(".base_layer.", ".")
        if name in start:
            assert torch.equal(p.cpu(), start[name]), f"base weight {name} changed"
    moved = [n for n, p in tr.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert moved  # B starts at 0: the adapter did train
    ck = tmp_path / "a" / "checkpoints" / "step_000003" / "model"
    saved = load_file(str(ck / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)  # the checkpoint holds the adapter, not the base weights
    assert not (ck / "model.safetensors").exists()
    assert (tmp_path / "a" / "final" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "a" / "final" / "model.safetensors").exists()  # merge_lora = false
    with pytest.raises(ConfigError, match="LoRA adapter only.*merge_lora"):
        load_policy(tmp_path / "a" / "final")


def test_lean_scorer_refuses_adapted_modules(micro_dir):
    from lengthrl.rollout.fast import LeanDecoder

    pm = _adapted(load_policy(micro_dir)[0])
    pid, pm_, rid, _ = _batch(pm.config.vocab_size)
    with pytest.raises(ConfigError, match="logprob_impl.*'model'"):
        LeanDecoder(pm).score_logits(pid, pm_, rid)
    LeanDecoder(load_policy(micro_dir)[0]).score_logits(pid, pm_, rid)  # a plain model is scored


@pytest.mark.parametrize("fmt", ["full", "sharded"])
def test_resume_is_bitwise(micro_dir, tmp_path, fmt):
    kw = settings(micro_dir, checkpoint_format=fmt)
    run(kw, tmp_path / "a")
    run(kw | {"steps": 2}, tmp_path / "b")
    run(kw, tmp_path / "b", resume=True)
    assert [r["step"] for r in rows(tmp_path / "b")] == [1, 2, 3]
    for name in ("metrics.jsonl", "samples.jsonl"):
        assert json.dumps(rows(tmp_path / "a", name)) == json.dumps(rows(tmp_path / "b", name))
    wa = load_file(str(tmp_path / "a" / "final" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "adapter" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_merged_final_model_equals_base_plus_adapter(micro_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    tr = run(settings(micro_dir, merge_lora=True, steps=2), tmp_path / "m")
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m" / "final")).eval()
    assert not lora.is_adapted(merged)
    batch = _batch(merged.config.vocab_size)
    tr.model.eval()
    with torch.no_grad():
        a = compute_logprobs(tr.model, *batch)
        b = compute_logprobs(merged, *batch)
        base = compute_logprobs(load_policy(micro_dir)[0], *batch)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert (a - base).abs().max() > 1e-4  # the adapter changed the policy, so the equality is not vacuous
    again = peft.PeftModel.from_pretrained(load_policy(micro_dir)[0], str(tmp_path / "m" / "final" / "adapter"))
    with torch.no_grad():
        torch.testing.assert_close(compute_logprobs(again.eval(), *batch), a, atol=1e-6, rtol=1e-6)


def test_reference_is_the_base_model_with_adapters_disabled(micro_dir):
    model, _ = load_policy(micro_dir)
    base, _ = load_policy(micro_dir)
    pm = _adapted(model)
    ref = lora.AdapterDisabled(pm)
    batch = _batch(pm.config.vocab_size)
    pm.train()
    with torch.no_grad():
        r = compute_logprobs(ref, *batch)
        b = compute_logprobs(base, *batch)
        p = compute_logprobs(pm.eval(), *batch)
    torch.testing.assert_close(r, b, atol=1e-6, rtol=0)
    assert (p - b).abs().max() > 1e-3  # with the adapter on, the policy differs
    assert sum(t.numel() for t in ref.parameters()) == sum(t.numel() for t in pm.parameters())  # no copy


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_training_forward_goes_through_the_adapter(micro_dir, shared_prefix):
    """compute_logprobs on a LoRA model (the lean scorer is refused) = the peft model's own forward, with the
    adapter's gradient; the chunked head gives the same."""
    pm = _adapted(load_policy(micro_dir)[0])
    batch = _batch(pm.config.vocab_size)
    ids = torch.cat([batch[0], batch[2]], 1)
    mask = torch.cat([batch[1], batch[3]], 1)
    from lengthrl.rollout import positions_from_mask

    T = batch[2].shape[1]
    with torch.no_grad():
        logits = pm(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask)).logits[:, -T - 1:-1]
        want = torch.log_softmax(logits.float(), -1).gather(-1, batch[2][..., None]).squeeze(-1) * batch[3]
    for chunk in (-1, 2):
        pm.zero_grad()
        got = compute_logprobs(pm, *batch, shared_prefix=shared_prefix, logprob_chunk=chunk)
        torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-5)
        got.sum().backward()
        grads = [p.grad for n, p in pm.named_parameters() if "lora_A" in n]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_lean_decoder_samples_the_adapted_policy(micro_dir):
    """FastEngine reads the adapters merged: the same rollouts as HFEngine through the peft model, and not the
    base model's; after an adapter update the next generate sees it."""
    pm = _adapted(load_policy(micro_dir)[0])
    _, tok = load_policy(micro_dir)
    prompts = [tok(t).input_ids for t in ("1+2*3\n", "abca\n", "x")]
    params = SamplingParams(temperature=1.0, max_new_tokens=10, seed=3)
    a = HFEngine(pm, tok).generate(prompts, 3, params)
    fe = FastEngine(pm, tok)
    b = fe.generate(prompts, 3, params)
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.lengths, b.lengths)
    torch.testing.assert_close(a.logp, b.logp, atol=1e-5, rtol=0)
    base = FastEngine(load_policy(micro_dir)[0], tok).generate(prompts, 3, params)
    assert (base.logp - b.logp).abs().max() > 1e-3
    with torch.no_grad():  # an optimizer step on the adapter
        for n, p in pm.named_parameters():
            if "lora_A" in n:
                p.mul_(-1.5)
    a2, b2 = HFEngine(pm, tok).generate(prompts, 3, params), fe.generate(prompts, 3, params)
    assert torch.equal(a2.response_ids, b2.response_ids)
    torch.testing.assert_close(a2.logp, b2.logp, atol=1e-5, rtol=0)
    assert not torch.allclose(a2.logp, b.logp)


def test_merged_state_dict_matches_peft_merge(micro_dir):
    pm = _adapted(load_policy(micro_dir)[0])
    ours = lora.merged_state_dict(pm)
    theirs = pm.merge_and_unload().state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], atol=1e-6, rtol=0)


def test_config_errors(micro_dir):
    assert build_config().lora_r == 0
    for item, key in (("lora_r=-1", "lora_r"), ("merge_lora=true", "merge_lora"), ("lora_alpha=0", "lora_alpha"),
                      ("lora_dropout=1.0", "lora_dropout"), ("lora_target_modules=[]", "lora_target_modules")):
        over = [item] if key in ("lora_r", "merge_lora") else ["lora_r=4", item]
        with pytest.raises(ConfigError, match=key):
            build_config(overrides=over)
    cfg = build_config(extra=lora.lora_settings(r=2, target_modules=["q_proj", "nope"]))
    with pytest.raises(ConfigError, match="lora_target_modules.*nope"):
        lora.wrap(load_policy(micro_dir)[0], cfg)


@pytest.mark.parametrize("over, match", [
    (["dist_strategy=fsdp"], "'lora_r'.*dist_strategy = 'ddp'.*not 'fsdp'"),
    (["policy=diffusion"], "'lora_r'.*policy = 'ar', not 'diffusion'"),
])
def test_lora_with_fsdp2_or_a_diffusion_policy_is_refused(over, match, micro_dir, tmp_path):
    """LoRA + FSDP2 and LoRA + policy = 'diffusion' are refused by the config check (one ConfigError naming
    lora_r and the fix); from the command line: exit 2, one line on stderr, no traceback, nothing written."""
    with pytest.raises(ConfigError, match=match):
        build_config(overrides=["lora_r=4", *over])
    import os
    import subprocess
    import sys

    from runkit import SRC

    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "lengthrl", "train", "--set", f"model={micro_dir}", "--set", "lora_r=4",
           "--out", str(out)]
    for item in over:
        cmd += ["--set", item]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=120)
    lines = [x for x in p.stderr.strip().splitlines() if x.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "lora_r" in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def test_config_show_lists_the_lora_keys():
    from lengthrl.train.config import describe

    keys = {row[0]: row for row in describe()}
    for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_lora", "logprob_chunk"):
        assert k in keys and keys[k][3]  # documented
    assert keys["lora_r"][2] == "0"


def test_logprob_impl_lean_refuses_lora_and_auto_uses_the_model(micro_dir, tmp_path):
    with pytest.raises(ConfigError, match="logprob_impl.*LoRA"):
        Trainer(build_config(extra=settings(micro_dir, logprob_impl="lean")), tmp_path / "lean", progress=False)
    tr = Trainer(build_config(extra=settings(micro_dir, logprob_impl="auto")), tmp_path / "auto", progress=False)
    from lengthrl.rollout.logprobs import lean_unsupported_reason

    assert "LoRA" in lean_unsupported_reason(tr.model)  # 'auto' falls back to the peft model's forward
