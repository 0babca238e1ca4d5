"""The shipped organisms (AR and diffusion): their files match the sha256 in organism.json, `model = "organism"`
loads them without building, they reproduce the recorded greedy accuracy, and the package data includes them."""

import fnmatch
import json
import shutil
import tomllib
from pathlib import Path

import pytest

import lengthrl.models.organism as org
from lengthrl.dllm import organism as dorg
from lengthrl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_ar_organism_files_and_config_hash():
    info = org.read_organism_info(org.SHIPPED_ORGANISM)
    assert info["hash"] == org.OrganismConfig().hash() == org.make_config(**info["config"]).hash()
    assert info["files"] == org.file_hashes(org.SHIPPED_ORGANISM)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(info["files"])
    assert info["build"]["torch_threads"] == 1 and info["build"]["torch_version"]
    size = sum(p.stat().st_size for p in org.SHIPPED_ROOT.rglob("*") if p.is_file())
    assert size < 8e6  # a few MB in git


def test_default_organism_is_the_shipped_one_without_building(monkeypatch, tmp_path):
    from lengthrl.train.loop import resolve_model_dir

    def no_build(*a, **k):
        raise AssertionError("the default organism must not be built")

    monkeypatch.setattr(org, "_train_into", no_build)
    logs = []
    assert org.build_organism(cache_dir=tmp_path, log=logs.append) == org.SHIPPED_ORGANISM
    assert "shipped" in logs[0]
    assert resolve_model_dir("organism") == org.SHIPPED_ORGANISM
    with pytest.raises(AssertionError):  # --rebuild builds (here: refuses, as patched), so does another seed
        org.build_organism(cache_dir=tmp_path, rebuild=True, log=None)
    with pytest.raises(AssertionError):
        org.build_organism(cache_dir=tmp_path, seed=1, log=None)


def test_rebuild_builds_into_the_cache_and_says_it_can_differ(monkeypatch, tmp_path):
    def fake_train(tmp, cfg, minutes, log):  # what _train_into leaves: a marker with the hash
        (tmp / org.MARKER).write_text(json.dumps({"hash": cfg.hash()}))

    monkeypatch.setattr(org, "_train_into", fake_train)
    logs = []
    d = org.build_organism(cache_dir=tmp_path, rebuild=True, log=logs.append)
    assert d == org.organism_dir(org.OrganismConfig(), tmp_path) and d != org.SHIPPED_ORGANISM
    assert any("can differ" in m and "shipped build" in m for m in logs)
    with pytest.raises(ConfigError, match="threads"):
        org.build_organism(cache_dir=tmp_path, rebuild=True, threads=0, log=None)


def test_shipped_organism_with_a_changed_file_is_refused(monkeypatch, tmp_path):
    copy = tmp_path / "organism"
    shutil.copytree(org.SHIPPED_ORGANISM, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3
    (copy / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(org, "SHIPPED_ORGANISM", copy)
    with pytest.raises(ConfigError, match=r"config\.json.*sha256.*--rebuild"):
        org.build_organism(log=None)


def test_shipped_ar_organism_gives_the_recorded_greedy_accuracy():
    from lengthrl.models.loading import load_policy
    from lengthrl.tasks.procedural import make_procedural_task

    info = org.read_organism_info(org.SHIPPED_ORGANISM)
    ev = info["eval_prompts"]
    model, tok = load_policy(org.SHIPPED_ORGANISM)
    evals = {t: make_procedural_task(t).samples(ev["split"], ev["n"], seed=ev["seed"]) for t in info["config"]["tasks"]}
    got = org.evaluate_accuracy(model, tok, evals, 0.0, ev["max_new_tokens"], seed=ev["seed"])
    for t, rec in info["eval_greedy"].items():
        assert got[t]["accuracy"] == rec["accuracy"] and got[t]["n"] == rec["n"] == ev["n"]
        assert got[t]["mean_length"] == pytest.approx(rec["mean_length"])


def test_shipped_diffusion_organism_is_the_demo_config_one_and_loads_without_building(monkeypatch):
    from lengthrl.dllm import adapter
    from lengthrl.models.loading import load_policy  # noqa: F401
    from lengthrl.tasks import get_task
    from lengthrl.train.validate import build_config

    d = dorg.shipped_dir()
    info = org.read_organism_info(d)
    assert info["files"] == org.file_hashes(d) and info["build"]["torch_threads"] == 1
    cfg = build_config(ROOT / "configs" / "justgrpo_organism.toml")
    assert info["hash"] == dorg.organism_key(cfg.task, cfg.task_args, cfg.max_new_tokens,
                                             dorg.OrganismRecipe(seed=cfg.seed))[1]

    def no_build(*a, **k):
        raise AssertionError("the shipped diffusion organism must not be built")

    monkeypatch.setattr(adapter, "task_organism", no_build)
    assert adapter.resolve(cfg) == d
    model, tok = adapter.load(d)
    task = get_task(cfg.task, **cfg.task_args)
    ev = info["eval_prompts"]
    got = dorg.greedy_ar_accuracy(model, tok, task, task.samples(ev["split"], n=ev["n"], seed=ev["seed"]),
                                  cfg.max_new_tokens)
    assert got == info["eval_greedy_ar"]


def test_package_data_ships_every_organism_file():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lengthrl"]
    pkg = ROOT / "src" / "lengthrl"
    files = [p.relative_to(pkg).as_posix() for p in org.SHIPPED_ROOT.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for f in files:  # setuptools' package-data globs: '*' does not cross '/'
        assert any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns), f
