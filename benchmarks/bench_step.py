"""A full RL step (rollout + scoring + update) of lengthrl vs TRL's GRPOTrainer, identical model and data.

Both sides: the same random organism-shaped Llama saved to one directory, the same arith_chain prompts and
verifier (TRL's reward function calls the task's scorer), prompts x G responses per step, max_new_tokens T,
temperature 1, one update per batch (num_iterations 1), no KL (beta 0), AdamW at the same lr, the GRPO loss
with group z-score advantages. TRL's gradient checkpointing is switched off (as lengthrl's `gradient_checkpointing` is by default) so
the comparison is of the pipelines, not of a memory option. Steps/s are medians over steps after a warm-up,
TRL's taken from its step callbacks; the trainers alternate step by step in one process.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import med, write
from lengthrl.models import save_tiny_random_model
from lengthrl.train.config import build_config
from lengthrl.train.loop import Trainer


def lengthrl_trainer(model_dir, out, prompts, G, T, engine, steps):
    cfg = build_config(extra=dict(model=str(model_dir), task="arith_chain", train_prompts=256, eval_prompts=0,
                                  prompts_per_step=prompts, group_size=G, max_new_tokens=T, loss="grpo",
                                  advantage="grpo", lr=1e-4, steps=steps, checkpoint_every=0, sample_every=0,
                                  log_every=0, rollout_engine=engine,
                                  reward=[{"name": "correct"}, {"name": "dapo_overlong", "max_len": T,
                                                                "cache_len": max(1, T // 3)}]))
    return Trainer(cfg, out, progress=False)


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


def trl_trainer(model_dir, out, prompts, G, T, steps, between=lambda: None):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from lengthrl.tasks import get_task

    task = get_task("arith_chain")
    samples = task.samples("train", 256, seed=0)
    by_prompt = {s.prompt: s for s in samples}

    def reward(prompts, completions, **kw):  # the same verifier as lengthrl's scoring
        return [float(task.score(by_prompt[p], c).reward) for p, c in zip(prompts, completions)]

    ds = Dataset.from_list([{"prompt": s.prompt} for s in samples])
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = GRPOConfig(output_dir=str(out), per_device_train_batch_size=prompts * G, num_generations=G,
                      max_completion_length=T, temperature=1.0, top_k=0, top_p=1.0, beta=0.0, loss_type="grpo",
                      scale_rewards="group", num_iterations=1, learning_rate=1e-4, max_steps=steps, use_cpu=True,
                      gradient_checkpointing=False, logging_steps=1, report_to="none", save_strategy="no",
                      disable_tqdm=True, seed=0)
    rec = _StepTimes(between)
    # a length term on both sides, so that groups differ and both trainers really update (lengthrl skips the
    # optimizer step when every advantage is zero; a random model is never correct)
    from lengthrl.integrations.trl import length_reward_func

    overlong = length_reward_func("dapo_overlong", None, group_size=G, max_len=T, cache_len=max(1, T // 3))
    tr = GRPOTrainer(model=model, reward_funcs=[reward, overlong], args=args, train_dataset=ds, processing_class=tok,
                     callbacks=[rec.callback])
    return tr, rec


def run(quick: bool = False, steps: int = 4, prompts: int = 4, G: int = 8, T: int = 48) -> dict:
    if quick:
        steps, T = 3, 24
    logging.getLogger("transformers").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="lengthrl-bench-step-"))
    model_dir = save_tiny_random_model(tmp / "model", arch="llama", seed=0)
    ours = {e: lengthrl_trainer(model_dir, tmp / f"ours_{e}", prompts, G, T, e, steps + 1) for e in ("fast", "hf")}
    times = {f"lengthrl_{e}": [] for e in ours}
    lens = {k: [] for k in times} | {"trl_grpo": []}

    def ours_round():  # one lengthrl step per engine after every TRL step; the first round is the warm-up
        for e, tr in ours.items():
            t0 = time.perf_counter()
            m = tr.train_step()
            tr.step += 1
            if tr.step > 1:
                times[f"lengthrl_{e}"].append(time.perf_counter() - t0)
                lens[f"lengthrl_{e}"].append(m["len/mean"])

    trl, rec = trl_trainer(model_dir, tmp / "trl", prompts, G, T, steps + 1, between=ours_round)
    trl_out = trl.train()
    hist = [h for h in trl.state.log_history if "completions/mean_length" in h]
    times["trl_grpo"] = rec.times[1:]
    lens["trl_grpo"] = [h["completions/mean_length"] for h in hist[1:]]
    res = {"config": {"prompts": prompts, "group_size": G, "max_new_tokens": T, "steps_timed": steps,
                      "model": "organism shape (llama, 0.8M params)"},
           "s_per_step": {k: med(v) for k, v in times.items()},
           "mean_len": {k: sum(v) / max(len(v), 1) for k, v in lens.items()},
           "raw_s": times, "trl_train_runtime_s": trl_out.metrics.get("train_runtime")}
    base = res["s_per_step"]["trl_grpo"]
    res["steps_per_s_x_trl"] = {k: base / v for k, v in res["s_per_step"].items()}
    for k, v in res["s_per_step"].items():
        print(f"  step {k}: {v:.2f} s/step, mean len {res['mean_len'][k]:.1f}, "
              f"{res['steps_per_s_x_trl'][k]:.2f}x TRL's steps/s", flush=True)
    write("rl_step", res)
    return res
