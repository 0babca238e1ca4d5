# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests).
# Each creates .venv when it is missing: torch 2.13.0 (CPU wheel) first, then the package with its pins.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lengthrl-installed
export PYTHONHASHSEED := 0
VERL_VENV ?= .venv-verl
VERL_PY   := $(VERL_VENV)/bin/python

.PHONY: venv test test-integrations soak demo demo-budget demo-dllm demo-lenacc experiments experiments-fork audit bench gpu-check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --ignore=tests/test_integrations_verl.py

# verl (optional extra) cannot share .venv: it pins transformers < 5.11 and pulls ray. Its own venv, then the
# verl tests there; the TRL and multi-process tests (already in `make test`) again for one report.
$(VERL_VENV)/.verl-installed: constraints.txt
	test -x $(VERL_PY) || python3 -m venv $(VERL_VENV)
	$(VERL_PY) -m pip install -q torch==2.13.0
	$(VERL_PY) -m pip install -q -c constraints.txt verl==0.9.1 pytest==9.2.0
	touch $@

test-integrations: $(STAMP) $(VERL_VENV)/.verl-installed
	$(VERL_PY) -m pytest -q -p no:cacheprovider tests/test_integrations_verl.py
	$(PY) -m pytest -q tests/test_integrations_trl.py tests/test_integrations_verl_core.py tests/test_distributed.py \
		tests/test_distributed_cli.py

# Many short runs killed with random faults and resumed; prints how many ended equal to an unkilled run.
soak: $(STAMP)
	LENGTHRL_SOAK_OUT=runs/soak $(PY) -m pytest -q -s -m slow tests/test_soak.py

demo: $(STAMP)
	$(VENV)/bin/lengthrl demo --out runs/demo

demo-budget: $(STAMP)
	$(VENV)/bin/lengthrl demo-budget --out runs/demo-budget

# When length buys accuracy (docs/organism.md): the count_letters 'ab' 6-10 organism variant (2000 SFT steps,
# reused when built), then GSPO and LUSPO from it, seeds 0-3, the per-style summaries pooled over seeds, and the
# LUSPO paper's claims judged over the four training seeds (`lengthrl verdict`, runs/lenacc/verdict_*.json).
LENACC_KNOBS := --knob count_letters.min_len=6 --knob count_letters.max_len=10 --knob count_letters.alphabet=ab \
	--knob count_letters.style_weights=1,2,0
LENACC_SEEDS := 0 1 2 3
demo-lenacc: $(STAMP)
	$(VENV)/bin/lengthrl organism --out runs/organism-lenacc --steps 2000 $(LENACC_KNOBS)
	for loss in gspo luspo; do for seed in $(LENACC_SEEDS); do \
		$(VENV)/bin/lengthrl train --config configs/lenacc_$$loss.toml --set seed=$$seed --set threads=1 --quiet \
			--out runs/lenacc/$$loss-s$$seed --overwrite || exit 1; done; done
	for loss in gspo luspo; do $(VENV)/bin/lengthrl styles $(foreach s,$(LENACC_SEEDS),runs/lenacc/$$loss-s$(s)/eval.json) \
		--pool || exit 1; done
	$(VENV)/bin/lengthrl verdict $(foreach s,$(LENACC_SEEDS),runs/lenacc/gspo-s$(s)) \
		--vs $(foreach s,$(LENACC_SEEDS),runs/lenacc/luspo-s$(s)) --metric len/mean \
		--claim "LUSPO ends with longer responses than GSPO" --paper "LUSPO, arXiv 2602.05261" \
		--out runs/lenacc/verdict_length.json
	$(VENV)/bin/lengthrl verdict $(foreach s,$(LENACC_SEEDS),runs/lenacc/gspo-s$(s)) \
		--vs $(foreach s,$(LENACC_SEEDS),runs/lenacc/luspo-s$(s)) --metric acc \
		--claim "LUSPO ends more accurate than GSPO" --paper "LUSPO, arXiv 2602.05261" \
		--out runs/lenacc/verdict_accuracy.json

# JustGRPO of the diffusion organism through the trainer; accuracy and pass@k (AR vs confidence order) before/after.
demo-dllm: $(STAMP)
	$(VENV)/bin/lengthrl dllm demo --out runs/demo-dllm

# The experiments on an organism where length buys accuracy (docs/organism.md, "Experiments (a)-(d)"): the
# count_letters 'ab' 6-10 variant of demo-lenacc (the running count beats the concise guess, by more the longer
# the word), four training seeds per recipe, every claim judged over the seeds with `lengthrl verdict`
# (runs/experiments/verdict_*.json): (a) Dr.GRPO: GRPO's wrong answers grow longer faster than Dr.GRPO's; (b)
# GSPO vs LUSPO off-policy (4 mini-batches per rollout batch, each recipe's clip range); (c) DLER and
# GRPO-lambda shorter than GRPO at no loss of accuracy; (d) the flexibility trap on the diffusion organism's
# dllm_fork task (`lengthrl dllm fork`, seeds 0-3: one SFT organism and one JustGRPO run per seed, pass@k up to
# 64 in AR vs confidence order before/after; $(EXP)/fork/summary.json, fork.md, fork.png).
# The runs of (a)-(c) are independent and go EXP_JOBS at a time (one torch thread each); a run that already has
# its eval.json is kept, so an interrupted `make experiments` resumes where it stopped. About 50 minutes on an
# idle 2-core machine (docs/organism.md gives the measured times).
EXP_SEEDS := 0 1 2 3
EXP_JOBS ?= 2
EXP_STEPS ?= 40
EXP_DLER_CAP ?= 44
EXP_SET := --set model=runs/organism-lenacc --set task=count_letters --set task_args.min_len=6 \
	--set task_args.max_len=10 --set task_args.alphabet=ab --set max_new_tokens=128 --set lr=1e-4 \
	--set steps=$(EXP_STEPS) --set threads=1 --quiet --overwrite
EXP := runs/experiments
EXP_PAPER_dler := DLER, arXiv 2510.15110
EXP_PAPER_grpo_lambda := GRPO-lambda, arXiv 2505.18086
EXP_RUNS := $(foreach r,grpo dr_grpo dler grpo_lambda,$(foreach s,$(EXP_SEEDS),$(r):s$(s):$(if $(filter dler,$(r)),--set@reward.0.max_len=$(EXP_DLER_CAP)))) \
	$(foreach r,gspo luspo,$(foreach s,$(EXP_SEEDS),$(r):offpolicy-s$(s):--set@mini_batches=4))
experiments: $(STAMP)
	$(VENV)/bin/lengthrl organism --out runs/organism-lenacc --steps 2000 --threads 1 $(LENACC_KNOBS)
	for r in $(EXP_RUNS); do echo $$r; done | xargs -P $(EXP_JOBS) -I{} sh -c 'r={}; \
		c=$${r%%:*}; rest=$${r#*:}; tag=$${rest%%:*}; extra=$$(echo $${rest#*:} | tr @ " "); seed=$${tag##*-s}; \
		seed=$${seed#s}; d=$(EXP)/$$c-$$tag; test -f $$d/eval.json && exit 0; \
		$(VENV)/bin/lengthrl train --config configs/$$c.toml $(EXP_SET) --set seed=$$seed $$extra --out $$d'
	$(VENV)/bin/lengthrl verdict $(foreach s,$(EXP_SEEDS),$(EXP)/dr_grpo-s$(s)) --vs $(foreach s,$(EXP_SEEDS),$(EXP)/grpo-s$(s)) \
		--slope len/wrong_mean --claim "GRPO's wrong answers grow longer faster than Dr.GRPO's" \
		--paper "Dr.GRPO, arXiv 2503.20783" --out $(EXP)/verdict_a_wrong_length_slope.json
	$(VENV)/bin/lengthrl verdict $(foreach s,$(EXP_SEEDS),$(EXP)/gspo-offpolicy-s$(s)) \
		--vs $(foreach s,$(EXP_SEEDS),$(EXP)/luspo-offpolicy-s$(s)) --metric len/mean \
		--claim "LUSPO ends with longer responses than GSPO off-policy" --paper "LUSPO, arXiv 2602.05261" \
		--out $(EXP)/verdict_b_length.json
	$(foreach r,dler grpo_lambda,$(VENV)/bin/lengthrl verdict $(foreach s,$(EXP_SEEDS),$(EXP)/grpo-s$(s)) \
		--vs $(foreach s,$(EXP_SEEDS),$(EXP)/$(r)-s$(s)) --metric len/mean --direction below \
		--claim "$(r) ends shorter than GRPO" --paper "$(EXP_PAPER_$(r))" --out $(EXP)/verdict_c_$(r)-length.json && \
	$(VENV)/bin/lengthrl verdict $(foreach s,$(EXP_SEEDS),$(EXP)/grpo-s$(s)) \
		--vs $(foreach s,$(EXP_SEEDS),$(EXP)/$(r)-s$(s)) --metric acc --threshold -0.05 \
		--claim "$(r) keeps GRPO's accuracy (a drop under 0.05)" --paper "$(EXP_PAPER_$(r))" \
		--out $(EXP)/verdict_c_$(r)-accuracy.json && ) true
	$(MAKE) --no-print-directory experiments-fork

# (d) alone (docs/organism.md, "The flexibility trap on a fork task").
experiments-fork: $(STAMP)
	$(VENV)/bin/lengthrl dllm fork --out $(EXP)/fork --seeds 0,1,2,3 --threads 1 --quiet

audit: $(STAMP)
	$(VENV)/bin/lengthrl audit --out runs/audit

bench: $(STAMP)
	PYTHONPATH=src:. $(PY) -m benchmarks $(BENCH_ARGS)

# The GPU check (docs/gpu.md) for a CUDA machine with torch and transformers preinstalled and no network: no
# venv, nothing installed; it runs from the source tree and writes $(GPU_CHECK_OUT)/gpu_check.json within 8 minutes.
# GPU_CHECK_ALLOW_CPU=1 runs its CPU-runnable parts on a CPU machine, shapes scaled down (under 3 minutes).
GPU_CHECK_OUT ?= runs/gpu-check
GPU_PYTHON ?= python3
gpu-check:
	GPU_CHECK_OUT=$(GPU_CHECK_OUT) PYTHONPATH=src $(GPU_PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf runs .pytest_cache
