"""Bad input to the length rewards: a clear error naming the field and the fix."""

import argparse

import pytest
import torch

from lengthrl.errors import ConfigError, DataError, UnknownNameError
from lengthrl.rewards import LENGTH_REWARDS, length_reward
from lengthrl.rewards import cli as rewards_cli


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownNameError) as e:
        length_reward("dlr", [1], [1], 1, max_len=3)
    assert "dler" in str(e.value) and "dapo_overlong" in str(e.value)


def test_unknown_and_missing_hyperparameters():
    with pytest.raises(ConfigError, match=r"max_lenn.*valid: max_len"):
        length_reward("dler", [1], [1], 1, max_lenn=3)
    with pytest.raises(ConfigError, match=r"needs hyperparameter\(s\) cache_len"):
        length_reward("dapo_overlong", [1], [1], 1, max_len=3)


@pytest.mark.parametrize(
    "lengths, correct, group_size, match",
    [
        ([1.0, float("nan")], [1, 0], 2, r"lengths\[1\] is nan"),
        ([1, -2], [1, 0], 2, r"lengths\[1\] = -2 is negative"),
        ([1, 2.5], [1, 0], 2, r"lengths\[1\] = 2.5 is not a whole number"),
        ([], [], 1, r"lengths: is empty"),
        ([[1, 2]], [1, 0], 2, r"lengths: expected a 1-D"),
        ([1, 2], [1], 2, r"correct: has 1 entries but lengths has 2"),
        ([1, 2], [1, 2], 2, r"correct\[1\] = 2"),
        ([1, 2], [1, float("nan")], 2, r"correct\[1\] is NaN"),
    ],
)
def test_bad_batch_inputs_name_the_field(lengths, correct, group_size, match):
    with pytest.raises(DataError, match=match):
        length_reward("kimi", lengths, correct, group_size)


def test_bad_group_size():
    with pytest.raises(ConfigError, match="does not divide N = 3"):
        length_reward("kimi", [1, 2, 3], [1, 1, 1], 2)
    with pytest.raises(ConfigError, match="group_size = 0"):
        length_reward("kimi", [1, 2], [1, 1], 0)
    with pytest.raises(ConfigError, match="group_size = 2.0; pass a positive int"):
        length_reward("kimi", [1, 2], [1, 1], 2.0)
    assert length_reward("kimi", [1, 2], [1, 1], torch.tensor(2)).tolist() == [0.5, -0.5]


@pytest.mark.parametrize(
    "name, hp, match",
    [
        ("dler", {"max_len": 0}, r"max_len = 0 is out of range"),
        ("dapo_overlong", {"max_len": 10, "cache_len": 20}, r"cache_len = 20 is out of range"),
        ("l1_exact", {"target": [1, 2, 3]}, r"target: has shape \(3,\)"),
        ("l1_exact", {"target": float("nan")}, r"target contains NaN"),
        ("arora_zanette", {"alpha": 1.0}, r"alpha = 1 is out of range"),
        ("grpo_lambda", {"lam": 0}, r"lam = 0 is out of range"),
        ("ruler", {"target": 5, "edges": [3, 2]}, r"strictly increasing"),
        ("ruler", {"target": 5, "match": "exact"}, r"match = 'exact'; valid: flexible, precise"),
        ("ruler", {"target": 60, "match": "precise"}, r"target 60 has no precise-match range; use one of 10, 30"),
        ("longwriter", {"lo": 5, "hi": 3, "max_len": 9}, r"hi must be >= lo"),
        ("surrogate", {"max_len": 10, "peak": 1.0}, r"peak = 1 is out of range"),
        ("hbpo", {"target": -1}, r"target must be > 0"),
        ("drpo", {"max_len": "x"}, r"max_len = 'x'; pass a number"),
    ],
)
def test_bad_hyperparameter_values(name, hp, match):
    with pytest.raises(ConfigError, match=match):
        length_reward(name, [1, 2], [1, 0], 2, **hp)


def test_every_reward_is_documented():
    for name, spec in LENGTH_REWARDS.items():
        doc = spec.fn.__doc__ or ""
        assert "arXiv" in doc, name
        assert spec.formula and spec.paper, name


def _parser():
    p = argparse.ArgumentParser()
    rewards_cli._args(p)
    return p


def test_cli_lists_every_reward(capsys):
    assert rewards_cli.run(_parser().parse_args([])) == 0
    out = capsys.readouterr().out
    for name in LENGTH_REWARDS:
        assert name in out


def test_cli_evaluates_a_reward(capsys):
    args = _parser().parse_args(["--name", "dapo_overlong", "--lengths", "10,50,60,70", "--correct", "1,1,0,1",
                                 "--hparams", '{"max_len": 64, "cache_len": 16}'])
    assert rewards_cli.run(args) == 0
    assert "dapo_overlong: 0.0000, -0.1250, -0.7500, -1.0000" in capsys.readouterr().out
    with pytest.raises(UnknownNameError):
        rewards_cli.run(_parser().parse_args(["--name", "nope"]))


def test_bool_lengths_rejected():
    with pytest.raises(DataError, match="bool"):
        length_reward("kimi", torch.tensor([True, False]), [1, 0], 2)


def test_length_pressure_hand_value_and_probe_directions(capsys):
    from lengthrl.rewards.probe import length_pressure, probe

    # one group, L = (10, 30), A = (+1, -1): cov = ((1)(-10) + (-1)(10))/2 = -10; / mean 20 -> -0.5
    assert length_pressure([1.0, -1.0], [10, 30], 2) == -0.5
    rows = {r["name"]: r for r in probe(prompts=64, seed=3)}
    assert set(rows) == set(LENGTH_REWARDS)
    assert rows["dler"]["pressure"] < 0 and rows["kimi"]["pressure"] < 0
    # cosine (Yeo et al.): shorter when correct, longer when wrong
    assert rows["cosine"]["pressure_correct"] < 0 < rows["cosine"]["pressure_wrong"]
    assert rewards_cli.run(_parser().parse_args(["--probe", "--seed", "1"])) == 0
    assert "cosine" in capsys.readouterr().out


def test_rewards_command_through_the_cli_frame(monkeypatch, capsys):
    from lengthrl import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["lengthrl.rewards.cli"])
    assert cli.main(["rewards", "--name", "dler"]) == 0
    assert "DLER 2510.15110" in capsys.readouterr().out
    assert cli.main(["rewards", "--name", "nope"]) == 2  # a LengthRLError becomes a one-line message
    assert "unknown length reward 'nope'; valid names: dapo_overlong" in capsys.readouterr().err
