"""`justgrpo_loss = "official"` against a hand transcription of the official JustGRPO loss (LeapLabTHU/JustGRPO,
grpo.py `logprob_loss` and `compute_group_advantages`, called as train.py calls them) on a small BERT masked LM:
parameter gradients equal to 1e-5. Also: the official rollout samples every canvas position, the texts and
lengths still end at the first EOS, and the per-position weight does not depend on the response's length."""

import copy

import pytest
import torch
import torch.nn.functional as F

from lengthrl.advantages import compute_advantages
from lengthrl.dllm.adapter import engine as diffusion_engine
from lengthrl.dllm.adapter import logprob_fn as diffusion_logprob_fn
from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, save_diffusion_model, tiny_diffusion_model
from lengthrl.errors import ConfigError
from lengthrl.rollout import SamplingParams
from lengthrl.train.validate import build_config
from lengthrl.train.update import UpdateBatch, ppo_update

TOK = char_tokenizer()
GEN, G = 5, 4


# ---- the official code, transcribed (single process: accelerator.gather is the identity) ----------------------
def official_logprob_loss(model, inputs, valid_samples, eps=0.2, gain=1.0, temperature=1., gen_length=256,
                          mask_id=126336):
    advantages, generated_ids, prompt_len = inputs['advantages'], inputs['generated_ids'], inputs['prompt_len']
    batch_size, device = advantages.shape[0], generated_ids.device
    prompt_ids, completion_ids = generated_ids[:, :prompt_len], generated_ids[:, prompt_len:]
    valid_samples = valid_samples.float().mean().item()
    scale = gain / gen_length / (valid_samples + 1e-5)
    for t in range(gen_length):
        x = torch.cat([prompt_ids, completion_ids[:, :t],
                       torch.full((batch_size, gen_length - t), mask_id, device=device, dtype=generated_ids.dtype)],
                      dim=1)
        logits = model(x).logits / temperature
        log_prob = F.log_softmax(logits[:, prompt_len + t, :].float(), dim=-1)
        token_log_prob = log_prob.gather(-1, completion_ids[:, t:t + 1]).squeeze(-1)
        ratio = (token_log_prob - token_log_prob.detach()).exp()
        clipped_ratio = ratio.clamp(1 - eps, 1 + eps)
        loss = -torch.min(ratio * advantages, clipped_ratio * advantages)
        loss.mul(scale).sum().backward()


def official_group_advantages(rewards, group_size):
    mean = rewards.view(group_size, -1).mean(dim=0).repeat(group_size)
    std = rewards.view(group_size, -1).std(dim=0).repeat(group_size)
    return (rewards - mean) / (std + 1e-4)


# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    m = tiny_diffusion_model(TOK, TinyDiffusionConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                                                      max_positions=32), seed=3)
    with torch.no_grad():
        m.cls.predictions.bias[TOK.eos_token_id] += 2.0  # EOS early and often: post-EOS positions exist
    return str(save_diffusion_model(m, TOK, tmp_path_factory.mktemp("official") / "m"))


def cfg_for(model_dir, **kw):
    return build_config(extra=dict(policy="diffusion", model=model_dir, task="dllm_addition", prompts_per_step=3,
                                   group_size=G, max_new_tokens=GEN, grad_clip=0.0, adv_eps=1e-4, train_prompts=8,
                                   justgrpo_loss="official") | kw)


def rollout(model_dir, cfg):
    from lengthrl.dllm.adapter import load

    model, tok = load(model_dir)
    prompts = [tok(p)["input_ids"] for p in ("12+3=", "4+15=", "10+9=")]  # equal lengths: no padding, as there
    roll = diffusion_engine(model, tok, cfg).generate(prompts, G, SamplingParams(max_new_tokens=GEN, seed=5))
    return model, tok, roll


def test_official_rollout_samples_the_whole_canvas(model_dir):
    model, tok, roll = rollout(model_dir, cfg_for(model_dir))
    assert roll.response_ids.shape == (3 * G, GEN) and bool((roll.response_mask == 1).all())
    eos = tok.eos_token_id
    post = [(i, n) for i, n in enumerate(roll.lengths.tolist()) if not roll.truncated[i] and n < GEN]
    assert post  # responses that end before the canvas does
    for i, n in post:
        assert roll.response_ids[i, n - 1] == eos and eos not in roll.response_ids[i, : n - 1].tolist()
    texts = roll.texts(tok)
    for i, n in enumerate(roll.lengths.tolist()):
        assert texts[i] == tok.decode(roll.response_ids[i, :n].tolist(), skip_special_tokens=True)
    fn = diffusion_logprob_fn(tok, cfg_for(model_dir))
    with torch.no_grad():  # the rollout's log-probs cover the canvas and equal the update's exact log-probs
        lp = fn(model, roll.prompt_ids, roll.prompt_mask, roll.response_ids, roll.response_mask)
    assert torch.allclose(lp, roll.logp, atol=1e-5) and bool((roll.logp < 0).all())


def test_advantages_equal_the_official_layout(model_dir):
    r = torch.tensor([1., -1, -1, 1, -1, -1, -1, -1, 1, 1, 1, -1])  # 3 groups of 4, prompt-major (ours)
    ours = compute_advantages("grpo", r, G, eps=1e-4)
    gen_major = r.view(3, G).T.reshape(-1)  # official: prompt.repeat(num_generations, 1), generation-major
    theirs = official_group_advantages(gen_major, G).view(G, 3).T.reshape(-1)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("rewards", [[1., -1, -1, 1, -1, -1, -1, -1, 1, 1, 1, -1],   # a group without signal
                                     [1., -1, -1, -1, 1, 1, -1, 1, -1, 1, 1, -1]])
def test_gradients_equal_the_official_transcription(model_dir, rewards):
    cfg = cfg_for(model_dir)
    model, tok, roll = rollout(model_dir, cfg)
    adv = compute_advantages("grpo", torch.tensor(rewards), G, eps=1e-4)  # [12]
    ref_model = copy.deepcopy(model).train()
    # ours: the trainer's update (one epoch, one mini-batch: ratio 1), gradients read after the step (lr 0)
    ub = UpdateBatch(roll.prompt_ids, roll.prompt_mask, roll.response_ids, roll.response_mask,
                     roll.response_mask.float(), adv, roll.group_index)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    res = ppo_update(model, opt, sched, ub, cfg, torch.Generator().manual_seed(0),
                     logprob_fn=diffusion_logprob_fn(tok, cfg))
    assert res.optimizer_steps == 1
    # official: one call per prompt's chunk (train.py splits the batch), V = responses with A != 0 of all chunks
    valid = (adv != 0).sum()
    P = roll.prompt_ids.shape[1]
    for g in range(3):
        rows = slice(g * G, (g + 1) * G)
        inputs = {"advantages": adv[rows], "prompt_len": P,
                  "generated_ids": torch.cat([roll.prompt_ids[rows], roll.response_ids[rows]], 1)}
        official_logprob_loss(ref_model, inputs, valid, gen_length=GEN, mask_id=tok.mask_token_id)
    n = 0
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        if q.grad is None:
            continue
        n += 1
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-5), (name, float((p.grad - q.grad).abs().max()))
    assert n > 10 and float(sum(q.grad.abs().sum() for q in ref_model.parameters() if q.grad is not None)) > 0


def test_the_official_weight_does_not_depend_on_length(model_dir):
    """With the ratio at 1 the official gradient is sum_i A_i/(L·V) sum_{t < L} grad log p_it: each canvas position
    of each response weighs A_i/(L·V), whatever the response's EOS position ('grpo': A_i/(B'·|y_i|))."""
    from lengthrl.objectives import policy_loss

    logp = torch.zeros(4, GEN, requires_grad=True)
    adv = torch.tensor([1.0, -1.0, 0.0, 2.0])
    canvas = torch.ones(4, GEN)
    cfg = cfg_for(model_dir)
    from lengthrl.train.distributed import SINGLE
    from lengthrl.train.update import loss_hparams, official_valid

    out = policy_loss("grpo", logp, logp.detach(), adv, canvas, num_seqs=official_valid(adv, SINGLE),
                      **loss_hparams(cfg))
    out.loss.backward()
    V = 3 + 1e-5
    assert torch.allclose(logp.grad, -adv[:, None].expand(4, GEN) / (GEN * V), atol=1e-7)


def test_config_errors(model_dir):
    with pytest.raises(ConfigError, match="'justgrpo_loss'"):
        cfg_for(model_dir, justgrpo_loss="dr_grpo")
    with pytest.raises(ConfigError, match="'loss'"):
        cfg_for(model_dir, loss="dapo")
    with pytest.raises(ConfigError, match="'loss_agg_mode'"):
        cfg_for(model_dir, loss_agg_mode="token-mean")
    with pytest.raises(ConfigError, match="'justgrpo_loss'"):
        build_config(extra={"justgrpo_loss": "official"})  # an AR run
