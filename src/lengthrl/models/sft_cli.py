"""`lengthrl sft`: supervised warm-up of your own model on a data file, so it answers in the task's format before
RL (e.g. ends with `#### n` for a GSM8K-style task).

The data goes through the RL data loader (`lengthrl.tasks.data`, the same `--task-arg` mapping and prompt
template as `lengthrl train --set task_args.KEY=VALUE`); each training row's prompt is encoded exactly as the
trainer encodes it (`--chat-template`, `--system-prompt`; lengthrl.tasks.chat) and its worked solution (the
`solution_field`, the answer column under answer_rule `hash` / `boxed`, or a conversation's final assistant
turn) followed by EOS is the target. The loss is on the response tokens only (lengthrl.models.sft). The model
and tokenizer (with its chat template) are saved to --out, ready for `--set model=OUT`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lengthrl.commands import command
from lengthrl.errors import ConfigError, DataError


def sft_examples(tokenizer, samples, fmt) -> list:
    """One `SFTExample` per sample: its prompt ids under `fmt`, then its solution and EOS."""
    from lengthrl.models.sft import SFTExample  # noqa: PLC0415

    if tokenizer.eos_token_id is None:
        raise ConfigError("lengthrl sft: the tokenizer has no eos_token; responses must end with EOS")
    out = []
    for s in samples:
        if not s.solution:
            raise DataError(f"prompt {s.id!r} has no worked solution to train on; map one with --task-arg "
                            "solution_field=COLUMN, or use --task-arg answer_rule=hash (or boxed) when the answer "
                            "column is a worked solution")
        p = fmt.encode(tokenizer, s)
        r = tokenizer(s.solution, add_special_tokens=False)["input_ids"]
        out.append(SFTExample(ids=[*p, *r, tokenizer.eos_token_id], prompt_len=len(p)))
    return out


@command("sft", examples=[
    "lengthrl sft --model /path/to/model --data gsm8k.jsonl --task-arg prompt_field=question "
    "--task-arg answer_rule=hash --task-arg template=gsm8k --steps 200 --out runs/sft",
    "lengthrl sft --model /path/to/model --data chats.jsonl --task-arg prompt_field=messages "
    "--system-prompt 'Be brief.' --out runs/sft",
])
def run(args: argparse.Namespace) -> int:
    """Run the `sft` subcommand."""
    import torch  # noqa: PLC0415

    from lengthrl.models.loading import load_policy, quiet_progress  # noqa: PLC0415
    from lengthrl.models.sft import train_sft  # noqa: PLC0415
    from lengthrl.tasks import get_task  # noqa: PLC0415
    from lengthrl.tasks.chat import prompt_format  # noqa: PLC0415
    from lengthrl.tasks.cli import parse_task_args  # noqa: PLC0415

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ConfigError(f"--out {out} is not empty; choose another directory or pass --overwrite")
    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task("data", path=args.data, **parse_task_args(args.task_arg, flag="--task-arg"))
    model, tok = load_policy(args.model)
    fmt = prompt_format(tok, args.chat_template, args.system_prompt, key="--chat-template")
    samples = task.samples("train", args.max_examples, seed=args.seed)
    examples = sft_examples(tok, samples, fmt)
    ctx = getattr(model.config, "max_position_embeddings", None)
    too_long = [s.id for s, e in zip(samples, examples) if ctx and len(e.ids) > ctx]
    if too_long:
        raise DataError(f"{len(too_long)} examples are longer than the model's context of {ctx} tokens (first: "
                        f"{too_long[0]!r}); shorten them or drop them from the file")
    res = train_sft(model, examples, tok.pad_token_id, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    warmup_steps=min(args.warmup_steps, max(0, args.steps - 1)), seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_progress():
        model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    k = max(1, min(10, len(res.losses) // 4))
    summary = {"out": str(out), "examples": len(examples), "steps": res.steps, "tokens": res.tokens,
               "seconds": round(res.seconds, 1), "loss_first": sum(res.losses[:k]) / k,
               "loss_last": sum(res.losses[-k:]) / k, "chat_template": fmt.chat_template is not None}
    (out / "sft.json").write_text(json.dumps({**summary, "losses": res.losses, "data": str(args.data),
                                              "model": str(args.model), "task_args": args.task_arg}, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"next: lengthrl train --set model={out} --set task=data --set task_args.path={args.data} ...")
    return 0


@run.args
def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="your model directory (transformers format)")
    p.add_argument("--data", required=True, help="JSONL/CSV/parquet file (the RL data loader)")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="data task option, as task_args of `lengthrl train` (prompt_field=, answer_rule=, template=, "
                   "solution_field=, ...); repeatable")
    p.add_argument("--out", required=True, help="directory for the warmed-up model and sft.json")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-5, help="AdamW peak learning rate (default 1e-5)")
    p.add_argument("--warmup-steps", type=int, default=10, help="linear warm-up steps (default 10)")
    p.add_argument("--max-examples", type=int, default=None, help="use at most this many training rows")
    p.add_argument("--chat-template", default="auto",
                   help="'auto' (the tokenizer's template when it has one), 'none' or a Jinja file (default auto, "
                   "as `lengthrl train`)")
    p.add_argument("--system-prompt", default=None, help="system turn of every prompt (needs a chat template)")
    p.add_argument("--seed", type=int, default=0, help="seed of order and initialisation (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
