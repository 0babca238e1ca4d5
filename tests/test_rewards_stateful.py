"""Stateful length rewards (HAPO history, GRPO-lambda, DRPO objects) and composite rewards."""

import json

import pytest
import torch

from lengthrl.errors import ConfigError, DataError
from lengthrl.rewards import DRPO, HAPO, CompositeReward, GRPOLambda, RewardSpec, length_reward


def test_hapo_scores_against_history_before_the_batch_then_shrinks_it():
    hapo = HAPO()
    # step 1: no history -> plain correctness; then h(a) = 20 (shortest correct), h(b) stays unset
    r1 = hapo([30, 20, 40, 10], [1, 1, 0, 0], 2, prompt_ids=["a", "b"])
    assert r1.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert hapo.history == {"a": 20}
    # step 2: a correct answer of length 10 against h = 20 earns cos(pi/4) = 0.7071; history shrinks to 10
    r2 = hapo([10, 40], [1, 0], 2, prompt_ids=["a", "a"])
    assert r2.tolist() == pytest.approx([1 + 0.707107, -1.0], abs=1e-5)
    assert hapo.history["a"] == 10
    # a longer correct answer never grows the history
    hapo([50, 60], [1, 1], 2, prompt_ids=["a", "a"])
    assert hapo.history["a"] == 10


def test_hapo_state_roundtrip_through_json():
    h = HAPO(w=0.5)
    h([30, 20], [1, 1], 2, prompt_ids=[7])
    state = json.loads(json.dumps(h.state_dict()))
    h2 = HAPO()
    h2.load_state_dict(state)
    assert h2.history == {"7": 20} and h2.hparams == {"w": 0.5}
    a = h([10, 30], [1, 0], 2, prompt_ids=[7], update=False)
    b = h2([10, 30], [1, 0], 2, prompt_ids=[7], update=False)
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="state_dict is for 'hapo'"):
        GRPOLambda().load_state_dict(state)


def test_hapo_prompt_id_checks():
    h = HAPO()
    with pytest.raises(ConfigError, match="prompt_ids is required"):
        h([1, 2], [1, 1], 2)
    with pytest.raises(DataError, match="mixes prompts"):
        h([1, 2], [1, 1], 2, prompt_ids=["a", "b"])
    with pytest.raises(DataError, match="prompt_ids has 3 entries"):
        h([1, 2, 3, 4], [1, 1, 1, 1], 2, prompt_ids=["a", "b", "c"])
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        HAPO(history=3)  # history is the object's state, not a hyperparameter


def test_grpo_lambda_object_counts_penalised_groups():
    g = GRPOLambda(lam=0.5)
    r = g([10, 20, 10, 20], [1, 1, 0, 1], 2)
    assert torch.equal(r, length_reward("grpo_lambda", [10, 20, 10, 20], [1, 1, 0, 1], 2, lam=0.5))
    assert g.last_selected.tolist() == [True, False]
    g([10, 20, 10, 20], [1, 1, 0, 1], 2)
    st = g.state_dict()
    assert (st["steps"], st["groups_seen"], st["groups_penalised"]) == (2, 4, 2)
    g2 = GRPOLambda()
    g2.load_state_dict(st)
    assert g2.groups_penalised == 2 and g2.hparams == {"lam": 0.5}


def test_drpo_object_tracks_weight_of_shortest():
    d = DRPO(max_len=50)
    a = d([10, 20, 30, 40], [1, 1, 0, 1], 4)
    assert d.mean_weight_shortest == pytest.approx(float(a[0]), abs=1e-6)
    d2 = DRPO(max_len=50)
    d2.load_state_dict(d.state_dict())
    assert d2.mixed_groups == 1


def test_luspo_recipe_composite():
    cfg = [
        {"name": "correct", "weight": 1.0},
        {"name": "format", "weight": 0.5},
        {"name": "dapo_overlong", "weight": 0.3, "max_len": 64, "cache_len": 16},
    ]
    comp = CompositeReward.from_config(cfg)
    total, parts = comp([10, 50, 60, 70], [1, 1, 0, 1], 4, format_ok=[1, 0, 1, 1])
    assert parts["correct"].tolist() == [1, 1, 0, 1]
    assert parts["format"].tolist() == [1, 0, 1, 1]
    assert parts["dapo_overlong"].tolist() == pytest.approx([0, -0.125, -0.75, -1.0])
    assert total.tolist() == pytest.approx([1.5, 1 - 0.0375, 0.5 - 0.225, 1.5 - 0.3])


def test_composite_per_sample_target_duplicates_and_task_reward():
    comp = CompositeReward([RewardSpec("correct"), RewardSpec("l1_exact", 1.0), RewardSpec("l1_exact", 2.0, {"alpha": 0.01})])
    assert comp.keys == ["correct", "l1_exact", "l1_exact_2"]
    total, parts = comp([10, 20], [1, 0], 2, target=torch.tensor([10, 30]), task_reward=[0.5, 0.25])
    assert parts["correct"].tolist() == [0.5, 0.25]
    assert parts["l1_exact"].tolist() == pytest.approx([1.0, -0.003])
    assert parts["l1_exact_2"].tolist() == pytest.approx([1.0, -0.1])
    assert total.tolist() == pytest.approx([0.5 + 1 + 2, 0.25 - 0.003 - 0.2])
    with pytest.raises(ConfigError, match="needs hyperparameter"):
        comp([10, 20], [1, 0], 2)  # target neither in config nor in the call
    with pytest.raises(ConfigError, match="used by no term"):
        comp([10, 20], [1, 0], 2, target=5, lo=3)


def test_composite_with_hapo_keeps_state():
    comp = CompositeReward.from_config({"terms": [{"name": "hapo", "weight": 1.0}]})
    comp([30, 20], [1, 1], 2, prompt_ids=["p"])
    assert comp.state_dict()["hapo"]["history"] == {"p": 20}
    comp2 = CompositeReward.from_config([{"name": "hapo"}])
    comp2.load_state_dict(comp.state_dict())
    t1, _ = comp([10, 30], [1, 1], 2, prompt_ids=["p"])
    t2, _ = comp2([10, 30], [1, 1], 2, prompt_ids=["p"])
    assert torch.equal(t1, t2)


@pytest.mark.parametrize(
    "cfg, match",
    [
        ([{"weight": 1.0}], r"reward term #0: missing key 'name'"),
        ([{"name": "correct"}, {"name": "dlr"}], r"reward term #1: unknown reward 'dlr'; valid names: correct, format"),
        ([{"name": "dler", "weight": "high", "max_len": 3}], r"reward term #0 \(dler\): key 'weight'"),
        ([{"name": "dler", "maxlen": 3}], r"reward term #0 \(dler\): unknown key\(s\) maxlen; valid: name, weight, max_len"),
        ([{"name": "dapo_overlong", "max_len": 3}], r"reward term #0 \(dapo_overlong\): missing key\(s\) cache_len"),
        ([{"name": "format", "alpha": 1}], r"reward term #0 \(format\): takes no hyperparameters"),
        ([], r"at least one term"),
        ("dler", r"must be a list"),
        ([["dler"]], r"reward term #0: expected a dict"),
        ([{"name": "drpo", "max_len": 9}], r"reward term #0 \(drpo\): gives advantage-like weights, not a reward"),
    ],
)
def test_composite_config_errors_name_term_and_key(cfg, match):
    with pytest.raises(ConfigError, match=match):
        CompositeReward.from_config(cfg)


def test_composite_format_term_needs_flags():
    comp = CompositeReward.from_config([{"name": "format"}])
    with pytest.raises(ConfigError, match="format_ok"):
        comp([1, 2], [1, 1], 2)


def test_composite_refuses_history_at_call_time():
    comp = CompositeReward.from_config([{"name": "hapo"}])
    with pytest.raises(ConfigError, match="history are used by no term"):
        comp([1, 2], [1, 1], 2, prompt_ids=["p"], history=5)
