"""`lengthrl organism`: the model organism (the shipped build, or one built on this CPU and cached) and how good it is."""

from __future__ import annotations

import json

from lengthrl.commands import command


@command(
    "organism",
    examples=[
        "lengthrl organism",
        "lengthrl organism --rebuild --threads 1",
        "lengthrl organism --out runs/organism --steps 1200 --seed 1",
        "lengthrl organism --tasks arith_chain --minutes 3 --force",
        "lengthrl organism --preset reasoning --out runs/organism-reasoning --threads 2",
        "lengthrl organism --out runs/organism-ab --knob count_letters.min_len=8 --knob count_letters.max_len=14 "
        "--knob count_letters.alphabet=ab",
    ],
)
def run(args):
    from lengthrl.models.organism import build_organism, parse_knobs, preset, read_organism_info

    overrides = preset(args.preset) if args.preset else {}
    if args.n_eval is not None:
        overrides["n_eval"] = args.n_eval
    if args.tasks:
        overrides["tasks"] = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if args.knob:
        knobs = parse_knobs(args.knob)
        overrides["task_knobs"] = {t: {**overrides.get("task_knobs", {}).get(t, {}), **knobs.get(t, {})}
                                   for t in {*overrides.get("task_knobs", {}), *knobs}}
    if args.steps is not None:  # the flag overrides the preset's SFT steps
        overrides["steps"] = args.steps
    out = build_organism(out_dir=args.out, seed=args.seed, minutes=args.minutes,
                         force=args.force, cache_dir=args.cache_dir, rebuild=args.rebuild, threads=args.threads,
                         **overrides)
    info = read_organism_info(out) or {}
    summary = {k: info.get(k) for k in ("hash", "params", "sft_steps", "sft_seconds", "build", "eval_greedy",
                                         "eval_sampled_t1")}
    print(json.dumps({"model_dir": str(out), **summary}, indent=2))
    return 0


@run.args
def _args(p):
    p.add_argument("--out", default=None, help="output directory (default: the cache, organism-<config hash>)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and SFT order (default 0)")
    p.add_argument("--steps", type=int, default=None, help="SFT steps (default: the recipe's, 300)")
    p.add_argument("--minutes", type=float, default=None, help="cap on SFT wall time in minutes")
    p.add_argument("--preset", default=None, choices=("reasoning",),
                   help="a built-in organism family: 'reasoning' = multi-digit addition (long_add, 1-6 digits), "
                        "byte-level BPE tokenizer, ~1.8M params (docs/organism.md); other flags override it")
    p.add_argument("--tasks", default=None, help="comma-separated procedural tasks (default: all)")
    p.add_argument("--n-eval", type=int, default=None, help="held-out problems per task for the report (default 100)")
    p.add_argument("--cache-dir", default=None, help="cache root (default $LENGTHRL_CACHE or ~/.cache/lengthrl)")
    p.add_argument("--knob", action="append", default=[], metavar="TASK.KNOB=VALUE",
                   help="task difficulty knob for the SFT data (repeatable), e.g. count_letters.max_len=14, "
                        "count_letters.alphabet=ab, count_letters.style_weights=1,2,2")
    p.add_argument("--force", action="store_true", help="rebuild even if the directory already holds an organism")
    p.add_argument("--rebuild", action="store_true",
                   help="build on this CPU even for the default config (which otherwise returns the shipped build); "
                        "the result can differ across CPUs and thread counts")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for the build (recorded)")
