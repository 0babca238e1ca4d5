"""Several processes (2 ranks, gloo, CPU) give the single-process result on the same global batch.

One spawn of 2 workers (torch.multiprocessing, spawn start) does all the multi-process work, to keep the start-up
cost once: (1) for every loss, with DDP and with FSDP2, one update on a fixed global batch split over the ranks
(mini-batches of whole groups, micro-batches of unequal counts): the loss and the synchronised gradient are
recorded; (2) a short training run with a checkpoint, then a resume to the end. The parent compares with one
process on the same global batch. A rank that aborts at teardown after writing its results (seen with gloo) does
not fail the test: the results files are what is checked.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lengthrl.errors import ConfigError
from lengthrl.models import save_tiny_random_model
from lengthrl.objectives import LOSSES
from lengthrl.rollout import HFEngine, SamplingParams
from lengthrl.train.validate import build_config
from lengthrl.train.distributed import SINGLE, Dist, concat_rollouts, init_from_env, shard_seed
from lengthrl.train.update import UpdateBatch, ppo_update

MICRO = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
             max_position_embeddings=128)
WORLD = 2
B, G, P, T = 16, 4, 3, 7  # global batch: 4 groups of 4
UPDATE_KW = dict(mini_batches=2, micro_batch_size=3, grad_clip=0.0, epochs=1)
# kimi varies the rewards with length (the random micro model is never correct, so HAPO's history stays empty
# here; it is in the config to go through the stateful-reward path on every rank and through the checkpoint)
RUN_KW = dict(task="arith_chain", train_prompts=64, eval_prompts=0, prompts_per_step=4, group_size=4,
              max_new_tokens=24, steps=3, checkpoint_every=1, sample_every=1, log_every=0, lr=1e-2,
              loss="luspo", advantage="grpo", mini_batches=2, micro_batch_size=3, rollout_shards=WORLD,
              reward=[{"name": "correct", "weight": 1.0}, {"name": "kimi", "weight": 1.0},
                      {"name": "hapo", "weight": 1.0}])
TOL = 1e-6
# the paths a plain run does not take: a reference model (KL), dynamic sampling (ranks keep unequal numbers of
# rows), two epochs (old log-probs), another loss, gradient checkpointing
EXTRA_KW = dict(steps=2, beta=0.05, dynamic_sampling=True, epochs=2, loss="dapo", checkpoint_every=0,
                gradient_checkpointing=True)
# a LoRA policy under DDP (only the adapter's gradients are all-reduced), with the KL to the adapter-free base
LORA_KW = dict(steps=2, beta=0.05, lora_r=4, lora_alpha=8.0, lora_target_modules=["q_proj", "v_proj"])
MB_SEED = 1  # mini-batches {groups 1, 3} and {0, 2}: each holds rows of both ranks (rank 0: groups 0-1)


def fixed_batch(vocab: int, seed: int = 0) -> UpdateBatch:
    """A global batch [B] with responses of varied lengths, groups contiguous, random advantages and old logp."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    rmask = (torch.arange(T)[None] < lengths[:, None]).long()  # [B, T]
    return UpdateBatch(
        prompt_ids=torch.randint(4, vocab, (B, P), generator=g), prompt_mask=torch.ones(B, P, dtype=torch.long),
        response_ids=torch.randint(4, vocab, (B, T), generator=g) * rmask, response_mask=rmask,
        loss_mask=rmask.float(), advantages=torch.randn(B, generator=g), group_index=torch.arange(B) // G,
        old_logp=(-3.0 - 0.1 * torch.randn(B, T, generator=g)) * rmask,
    )


class Recorder(torch.optim.SGD):
    """SGD with lr 0 that keeps a copy of the (synchronised, full) gradient of its last step."""

    def __init__(self, params):
        super().__init__(params, lr=0.0)
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None):
        self.grads = []
        for group in self.param_groups:
            for p in group["params"]:
                gr = p.grad if p.grad is not None else torch.zeros_like(p)
                self.grads.append((gr.full_tensor() if hasattr(gr, "full_tensor") else gr).detach().clone())
        return super().step(closure)


def one_update(model_dir: str, loss: str, d: Dist, rows: torch.Tensor, micro: int = 3) -> tuple[float, torch.Tensor]:
    """Loss and flattened gradient of one optimizer step of `loss` on `rows` of the fixed batch."""
    from lengthrl.models import load_policy

    torch.manual_seed(0)
    model, _ = load_policy(model_dir)
    batch = fixed_batch(model.config.vocab_size)
    groups = torch.unique(batch.group_index)
    wrapped = d.wrap(model)
    opt = Recorder(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    cfg = build_config(extra=dict(model=model_dir, loss=loss, prompts_per_step=4, group_size=G) | UPDATE_KW
                       | dict(micro_batch_size=micro))
    m = ppo_update(wrapped, opt, sched, batch.rows(rows), cfg, torch.Generator().manual_seed(MB_SEED), dist=d,
                   groups=groups).metrics
    assert m["optimizer_steps"] == UPDATE_KW["mini_batches"]
    return m["loss"], torch.cat([gr.flatten() for gr in opt.grads])


def _worker(rank: int, port: int, model_dir: str, out: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from lengthrl.train.distributed import shutdown
    from lengthrl.train.loop import train

    results = {}
    for strategy in ("ddp", "fsdp"):
        d = init_from_env(strategy)
        rows = torch.arange(rank * B // WORLD, (rank + 1) * B // WORLD)
        for loss in LOSSES:
            results[f"{strategy}/{loss}"] = one_update(model_dir, loss, d, rows)
        results[f"{strategy}/bnpo/micro4"] = one_update(model_dir, "bnpo", d, rows, micro=G)
    bf16 = init_from_env("fsdp", "bfloat16")
    results["fsdp_bf16/luspo"] = one_update(model_dir, "luspo", bf16, torch.arange(rank * B // WORLD,
                                                                                    (rank + 1) * B // WORLD))
    # short runs: 2 steps, a checkpoint, a resume to 3; DDP, FSDP2, and a DDP checkpoint resumed under FSDP2
    kw = RUN_KW | dict(model=model_dir)
    d = init_from_env("ddp")
    run = Path(out) / "run"
    train(build_config(extra=kw | dict(steps=2)), run, progress=False, evaluate=False, dist=d)
    if d.is_main:
        shutil.copytree(run, Path(out) / "mixed")
    d.barrier()
    train(build_config(extra=kw), run, resume=True, progress=False, evaluate=False, dist=d)
    train(build_config(extra=kw | LORA_KW), Path(out) / "lora", progress=False, evaluate=False, dist=d)
    fsdp, fsdp_kw = init_from_env("fsdp"), kw | dict(dist_strategy="fsdp")
    train(build_config(extra=fsdp_kw | dict(steps=2)), Path(out) / "fsdp", progress=False, evaluate=False,
          dist=fsdp)
    train(build_config(extra=fsdp_kw), Path(out) / "fsdp", resume=True, progress=False, evaluate=False, dist=fsdp)
    train(build_config(extra=fsdp_kw), Path(out) / "mixed", resume=True, progress=False, evaluate=False, dist=fsdp)
    train(build_config(extra=fsdp_kw | EXTRA_KW), Path(out) / "fsdp_extra", progress=False, evaluate=False,
          dist=fsdp)
    dcp_kw = fsdp_kw | dict(checkpoint_format="sharded")  # each rank writes its shards, no gather
    train(build_config(extra=dcp_kw | dict(steps=2)), Path(out) / "fsdp_dcp", progress=False, evaluate=False,
          dist=fsdp)
    if fsdp.is_main:
        shutil.copytree(Path(out) / "fsdp_dcp", Path(out) / "fsdp_dcp_at2")
    fsdp.barrier()
    train(build_config(extra=dcp_kw), Path(out) / "fsdp_dcp", resume=True, progress=False, evaluate=False,
          dist=fsdp)
    train(build_config(extra=fsdp_kw | dict(steps=2, fsdp_param_dtype="bfloat16")), Path(out) / "fsdp_bf16",
          progress=False, evaluate=False, dist=bf16)
    results["verifier_calls"] = verifier_calls(model_dir, Path(out) / "count", d)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    shutdown(d)


class CountingTask:
    """A task whose verifier counts its calls (in this process)."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, 0

    def samples(self, *a, **k):
        return self.inner.samples(*a, **k)

    def score(self, sample, text):
        self.calls += 1
        return self.inner.score(sample, text)


def verifier_calls(model_dir: str, out: Path, d: Dist) -> int:
    """How many responses this rank verified in a one-step run."""
    from lengthrl.train.loop import Trainer

    tr = Trainer(build_config(extra=RUN_KW | dict(model=model_dir, steps=1)), out, progress=False, dist=d)
    tr.task = CountingTask(tr.task)
    tr.run()
    return tr.task.calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_random_model(tmp_path_factory.mktemp("m") / "qwen", arch="qwen2", seed=0, **MICRO))


@pytest.fixture(scope="module")
def two_ranks(model_dir, tmp_path_factory):
    """Run the 2-rank workers once; returns their output directory."""
    out = tmp_path_factory.mktemp("dist")
    ctx = mp.start_processes(_worker, args=(_free_port(), model_dir, str(out)), nprocs=WORLD, join=False,
                             start_method="spawn")
    try:
        while not ctx.join(timeout=120):
            pass
    except mp.ProcessRaisedException:
        raise
    except mp.ProcessExitedException:  # an abort at teardown after the work is tolerated if results exist
        pass
    missing = [r for r in range(WORLD) if not (out / f"rank{r}.pt").is_file()]
    assert not missing, f"ranks {missing} did not finish"
    return out


def test_update_equals_one_process_for_every_loss(model_dir, two_ranks):
    """Loss and synchronised gradient of 2 ranks = 1 process on the whole batch, within 1e-6, DDP and FSDP2.
    bnpo normalises by its local token count, so its reference is one process whose micro-batches are the
    ranks' rows (micro_batch_size = the rank's share, per mini-batch)."""
    from lengthrl.train.update import minibatch_rows

    split = minibatch_rows(torch.arange(B) // G, 2, torch.Generator().manual_seed(MB_SEED))
    assert all({int(r) * WORLD // B for r in rows} == {0, 1} for rows in split)  # not one rank's rows alone
    ranks = [torch.load(two_ranks / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    report = {}
    for loss in LOSSES:
        ref_loss, ref_grad = one_update(model_dir, loss, SINGLE, torch.arange(B))
        for strategy in ("ddp", "fsdp"):
            key = f"{strategy}/{loss}"
            (l0, g0), (l1, g1) = ranks[0][key], ranks[1][key]
            assert l0 == l1 and torch.equal(g0, g1), f"{key}: ranks disagree"
            if loss == "bnpo":  # normalised per micro-batch by definition: the reference has one micro-batch
                key = f"{key}/micro4"  # per rank's rows (a whole group), and the ranks use micro-batches of G
                (l0, g0) = ranks[0][key]
                ref_loss, ref_grad = one_update(model_dir, loss, SINGLE, torch.arange(B), micro=G)
            dl, dg = abs(l0 - ref_loss), float((g0 - ref_grad).abs().max())
            report[key] = (dl, dg)
            assert dl < TOL and dg < TOL, (key, dl, dg)
            assert float(ref_grad.abs().max()) > 1e-4  # the gradient is not trivially zero
    print("\nmax |loss diff|, max |grad diff| (2 ranks vs 1 process):")
    for k, (dl, dg) in report.items():
        print(f"  {k:<18} {dl:.3e} {dg:.3e}")


@pytest.fixture(scope="module")
def one_process(model_dir, tmp_path_factory) -> Path:
    """The short run on one process with the same rollout shards (the reference of the multi-rank runs)."""
    from lengthrl.train.loop import train

    out = tmp_path_factory.mktemp("one")
    train(build_config(extra=RUN_KW | dict(model=model_dir)), out, progress=False, evaluate=False)
    return out


def metric_rows(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_metrics(ref: list[dict], got: list[dict], what: str, steps=(1, 2, 3)) -> float:
    """Every logged metric equal (floats within TOL, relative above 1); returns the largest float difference."""
    assert [r["step"] for r in got] == [r["step"] for r in ref] == list(steps), what
    worst = 0.0
    for a, b in zip(ref, got):
        assert set(a) == set(b), what
        for k, v in a.items():
            if k.endswith("time_s") or k == "tokens_per_s":
                continue
            if isinstance(v, float) and isinstance(b[k], float):
                worst = max(worst, abs(v - b[k]))
                assert abs(v - b[k]) <= TOL * max(1.0, abs(v)), (what, a["step"], k, v, b[k])
            else:
                assert v == b[k], (what, a["step"], k, v, b[k])
    return worst


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "final" / "model.safetensors")


def test_short_run_and_resume_equal_one_process(two_ranks, one_process):
    """A 3-step run on 2 ranks (2 steps, a checkpoint, a resume to 3) logs the metrics of one process with the
    same rollout shards; only rank 0 wrote files."""
    ref = metric_rows(one_process)
    assert any(r["optimizer_steps"] > 0 and r["grad_norm"] > 0 for r in ref)
    assert any(r["reward/mean"] != 0 for r in ref)
    worst = assert_same_metrics(ref, metric_rows(two_ranks / "run"), "ddp")
    print(f"\nshort run: max |metric diff| = {worst:.2e}")
    ckpts = sorted(p.name for p in (two_ranks / "run" / "checkpoints").iterdir())
    assert ckpts[-1] == "step_000003" and not list((two_ranks / "run" / "checkpoints").glob(".tmp*"))
    samples = (two_ranks / "run" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == len((one_process / "samples.jsonl").read_text().splitlines())  # rank 0 wrote once


def test_lora_under_ddp_equals_one_process(model_dir, two_ranks, tmp_path):
    from lengthrl.train.loop import train

    train(build_config(extra=RUN_KW | dict(model=model_dir) | LORA_KW), tmp_path, progress=False, evaluate=False)
    ref = metric_rows(tmp_path)
    assert any(r["optimizer_steps"] > 0 and r["grad_norm"] > 0 for r in ref)
    assert_same_metrics(ref, metric_rows(two_ranks / "lora"), "ddp lora", steps=(1, 2))
    assert (two_ranks / "lora" / "final" / "adapter" / "adapter_model.safetensors").is_file()


def test_fsdp_training_checkpoints_and_resume_equal_one_process(model_dir, two_ranks, one_process, tmp_path):
    """The trainer under FSDP2 (parameters sharded over 2 ranks; sampling and old log-probs with the weights
    unsharded once per step; checkpoints gathered to rank 0): the 3-step run with a resume logs the metrics of
    one process and ends with its weights; a DDP checkpoint resumes under FSDP2, an FSDP2 checkpoint on one
    process, both to the same metrics."""
    from lengthrl.train import checkpoint as ckpt
    from lengthrl.train.loop import train

    ref = metric_rows(one_process)
    report = {what: assert_same_metrics(ref, metric_rows(two_ranks / what), what) for what in ("fsdp", "mixed")}
    w1, w2 = final_weights(one_process), final_weights(two_ranks / "fsdp")
    assert sorted(w1) == sorted(w2)  # full tensors, the tied lm_head saved once as on one process
    dw = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    ddp_dw = max(float((w1[k] - v).abs().max()) for k, v in final_weights(two_ranks / "run").items())
    assert dw < 1e-5 and ddp_dw < 1e-5, (dw, ddp_dw)
    config = json.loads((two_ranks / "fsdp" / "final" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    last = ckpt.latest_valid(two_ranks / "fsdp")
    assert last is not None and last.name == "step_000003"
    opt = torch.load(last / "trainer_state.pt", weights_only=False)["optimizer"]
    assert all(isinstance(p, str) for g in opt["param_groups"] for p in g["params"])  # keyed by name
    assert opt["state"] and all(v["exp_avg"].shape == w1.get(k, v["exp_avg"]).shape for k, v in opt["state"].items())
    extra = train(build_config(extra=RUN_KW | dict(model=model_dir) | EXTRA_KW), tmp_path / "extra",
                  progress=False, evaluate=False).metrics.rows()
    got = metric_rows(two_ranks / "fsdp_extra")
    assert any(r["kl_ref"] > 0 for r in extra) and any(r["kept_groups_frac"] < 1 for r in extra)
    assert len(got) == len(extra) == 2
    report["fsdp, kl + dynamic sampling + 2 epochs"] = assert_same_metrics(extra, got, "fsdp extra", steps=[1, 2])
    # the FSDP2 checkpoint of step 2 resumed by one process
    cross = tmp_path / "cross"
    shutil.copytree(two_ranks / "fsdp", cross)
    shutil.rmtree(cross / "checkpoints" / "step_000003")
    shutil.rmtree(cross / "final")
    tr = train(build_config(extra=RUN_KW | dict(model=model_dir)), cross, resume=True, progress=False,
               evaluate=False)
    report["fsdp checkpoint, one process"] = assert_same_metrics(ref, tr.metrics.rows(), "fsdp -> one process")
    w3 = final_weights(cross)
    assert max(float((w1[k] - w3[k]).abs().max()) for k in w1) < 1e-5
    # sharded checkpoints (torch.distributed.checkpoint, one file per rank): resumed on 2 ranks, and on one
    report["fsdp, sharded checkpoints"] = assert_same_metrics(ref, metric_rows(two_ranks / "fsdp_dcp"), "dcp")
    at2 = tmp_path / "dcp_one"
    shutil.copytree(two_ranks / "fsdp_dcp_at2", at2)
    shutil.rmtree(at2 / "final")
    shards = sorted(p.name for p in (at2 / "checkpoints" / "step_000002" / ckpt.SHARDS).iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"], shards
    assert not list((at2 / "checkpoints" / "step_000002" / "model").glob("*.safetensors"))
    tr = train(build_config(extra=RUN_KW | dict(model=model_dir, checkpoint_format="sharded")), at2, resume=True,
               progress=False, evaluate=False)
    report["sharded fsdp checkpoint, one process"] = assert_same_metrics(ref, tr.metrics.rows(), "dcp -> one")
    assert max(float((w1[k] - final_weights(at2)[k]).abs().max()) for k in w1) < 1e-5
    (two_ranks / "fsdp_dcp_at2" / "checkpoints" / "step_000002" / ckpt.SHARDS / "__1_0.distcp").write_bytes(b"x")
    assert ckpt.latest_valid(two_ranks / "fsdp_dcp_at2").name == "step_000001"  # a corrupt shard is detected
    print("\nFSDP2 runs: max |metric diff| vs one process:", {k: f"{v:.2e}" for k, v in report.items()},
          f"final weights: fsdp {dw:.2e}, ddp {ddp_dw:.2e}")


def test_fsdp_mixed_precision(model_dir, two_ranks, one_process):
    """FSDP2 with bfloat16 compute (`fsdp_param_dtype`): the update's loss and float32 gradient are the float32
    ones up to bfloat16 rounding, and a 2-step run trains with float32 weights and optimizer state."""
    ref_loss, ref_grad = one_update(model_dir, "luspo", SINGLE, torch.arange(B))
    loss, grad = torch.load(two_ranks / "rank0.pt", weights_only=False)["fsdp_bf16/luspo"]
    cos = float(torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0))
    assert grad.dtype == torch.float32 and abs(loss - ref_loss) < 0.02 * abs(ref_loss) and cos > 0.99, \
        (loss, ref_loss, cos)
    assert float((grad - ref_grad).abs().max()) > 0  # bfloat16 was really used
    rows = metric_rows(two_ranks / "fsdp_bf16")
    assert [r["step"] for r in rows] == [1, 2] and all(r["optimizer_steps"] > 0 for r in rows)
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    w = final_weights(two_ranks / "fsdp_bf16")
    w0 = final_weights(one_process)
    assert all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for v in w.values()) and sorted(w) == \
        sorted(w0)
    opt = torch.load(two_ranks / "fsdp_bf16" / "checkpoints" / "step_000002" / "trainer_state.pt",
                     weights_only=False)["optimizer"]
    assert all(v["exp_avg"].dtype == torch.float32 for v in opt["state"].values())
    print(f"\nFSDP2 bfloat16 compute, one update (luspo): loss {loss:.5f} vs float32 {ref_loss:.5f}, "
          f"gradient cosine {cos:.5f}")


def test_param_dtype_needs_fsdp(model_dir):
    with pytest.raises(ConfigError, match="fsdp_param_dtype.*bfloat16, float16.*dist_strategy"):
        build_config(extra=RUN_KW | dict(model=model_dir, fsdp_param_dtype="bfloat16"))
    with pytest.raises(ConfigError, match="fsdp_param_dtype"):
        build_config(extra=RUN_KW | dict(model=model_dir, dist_strategy="fsdp", fsdp_param_dtype="int8"))
    with pytest.raises(ConfigError, match="fsdp_param_dtype"):
        init_from_env("ddp", "bfloat16")


def test_each_rank_verifies_only_its_own_responses(two_ranks):
    """Verification is split (each rank its prompts' G responses), the verdicts are gathered for the rewards."""
    calls = [torch.load(two_ranks / f"rank{r}.pt", weights_only=False)["verifier_calls"] for r in range(WORLD)]
    n = RUN_KW["prompts_per_step"] * RUN_KW["group_size"]
    assert calls == [n // WORLD] * WORLD


# ---- single-process pieces ------------------------------------------------------------------------------------
def test_single_process_is_a_no_op():
    d = Dist()
    x = torch.tensor([1.0, 2.0])
    assert not d.enabled and d.is_main and torch.equal(d.all_sum(x), x) and d.all_max(3) == 3
    assert d.gather_objects("a") == ["a"] and d.block(8) == (0, 8) and d.grad_scale(True) == 1.0
    m = torch.nn.Linear(2, 2)
    assert d.wrap(m) is m
    assert init_from_env().world_size == 1 or "WORLD_SIZE" in os.environ


def test_blocks_split_evenly_or_name_the_key():
    assert [Dist(rank=r, world_size=4).block(8) for r in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ConfigError, match="prompts_per_step.*multiple of 3"):
        Dist(rank=0, world_size=3).block(8)
    assert Dist(rank=1, world_size=2).grad_scale(True) == 2.0 and Dist(rank=1, world_size=2).grad_scale(False) == 1.0


def test_unknown_strategy_names_the_key():
    with pytest.raises(ConfigError, match="dist_strategy.*ddp, fsdp"):
        init_from_env("zero3")


def test_shard_seeds_differ_and_are_stable():
    seeds = {shard_seed(0, s, k) for s in range(20) for k in range(8)}
    assert len(seeds) == 160 and shard_seed(1, 2, 3) == shard_seed(1, 2, 3)


def test_rollout_shards_must_divide_the_prompts(model_dir):
    with pytest.raises(ConfigError, match="rollout_shards"):
        build_config(extra=RUN_KW | dict(model=model_dir, rollout_shards=3))


def test_concat_rollouts_equals_generating_shards_apart(model_dir):
    """Two shards generated apart then stacked = the same rows as each shard alone: re-padding keeps every
    prompt's tokens, responses, log-probs and lengths; group ids stay unique."""
    from lengthrl.models import load_policy

    model, tok = load_policy(model_dir)
    eng = HFEngine(model, tok)
    p = SamplingParams(max_new_tokens=6, seed=1)
    a = eng.generate([[5, 6, 7], [8, 9]], 2, p)
    b = eng.generate([[10, 11, 12, 13, 14]], 3, SamplingParams(max_new_tokens=4, seed=2))
    c = concat_rollouts([a, b], eng.pad_token_id)
    assert len(c) == 7 and c.group_index.tolist() == [0, 0, 1, 1, 2, 2, 2]
    for part, rows in ((a, range(0, 4)), (b, range(4, 7))):
        for i, r in enumerate(rows):
            assert c.response_token_lists()[r] == part.response_token_lists()[i]
            pm = c.prompt_mask[r].bool()
            assert c.prompt_ids[r][pm].tolist() == part.prompt_ids[i][part.prompt_mask[i].bool()].tolist()
            assert torch.equal(c.logp[r, : part.lengths[i]], part.logp[i, : part.lengths[i]])
    assert c.prompt_mask[4:].all() and not c.prompt_mask[:4, :2].any()  # left padding
    with pytest.raises(ConfigError):
        concat_rollouts([], 0)


def test_update_metrics_do_not_depend_on_micro_batches(model_dir):
    """Loss metrics are reduced by entry counts (and min / max), so micro-batching does not change them."""
    from lengthrl.models import load_policy

    for loss in ("dapo", "luspo"):
        got = []
        for micro in (0, 3):
            torch.manual_seed(0)
            model, _ = load_policy(model_dir)
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
            cfg = build_config(extra=dict(model=model_dir, loss=loss, prompts_per_step=4, group_size=G, epochs=2,
                                          micro_batch_size=micro, grad_clip=0.0))
            got.append(ppo_update(model, opt, sched, fixed_batch(model.config.vocab_size), cfg,
                                  torch.Generator().manual_seed(0)).metrics)
        for k in ("ratio_mean", "ratio_min", "ratio_max", "approx_kl", "clip_frac_high", "entropy", "loss"):
            assert got[0][k] == pytest.approx(got[1][k], rel=1e-5, abs=1e-7), (loss, k)
        assert got[0]["ratio_max"] > got[0]["ratio_min"] and got[0]["ratio_mean"] != 1.0  # epoch 2 moved them
