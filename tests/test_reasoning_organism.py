"""The reasoning organism family: the add_chain and long_add tasks (levels, traces that spell the sum), the byte-level BPE
tokenizer, and an organism built with both that the trainer runs on."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.errors import ConfigError
from lengthrl.models.organism import PRESETS, OrganismConfig, build_organism, make_config, preset
from lengthrl.models.tokenizer import build_bpe_tokenizer
from lengthrl.tasks import get_task
from lengthrl.eval.styles import classify_style
from lengthrl.tasks.procedural import AddChain, LongAdd, extract_answer


def test_long_add_by_hand():
    t = LongAdd(min_digits=4, max_digits=4)
    s = t.samples("train", 50, seed=3)
    assert {x.meta["level"] for x in s} == {4}
    for x in s:
        a, b = map(int, x.prompt.removeprefix("add: ").strip().split("+"))
        assert x.answer == str(a + b) and len(str(a)) == 4 and len(str(b)) == 4
        steps = x.meta["traces"]["steps"].splitlines()
        assert len(steps) == 4 + (a + b >= 10 ** 4) + 1  # one line per column, a carry line, the answer
        assert t.score(x, x.meta["traces"]["steps"]).correct and t.score(x, x.meta["traces"]["verbose"]).correct
        assert not t.score(x, f"<answer>{a + b + 1}</answer>").correct
    # 4817 + 2596: the columns from the right with their carries
    p = [x for x in LongAdd(min_digits=4, max_digits=4).samples("train", 4000, seed=0) if x.prompt == "add: 4817+2596\n"]
    if p:
        assert p[0].meta["traces"]["steps"].splitlines()[:2] == ["1: 7+6+0=13 w3 c1", "2: 1+9+1=11 w1 c1"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12))
def test_long_add_traces_spell_the_sum_and_grow_with_the_level(seed, d):
    t = LongAdd(min_digits=d, max_digits=d)
    for x in t.samples("test", 5, seed=seed):
        tr = x.meta["traces"]
        assert extract_answer(tr["concise"]) == extract_answer(tr["steps"]) == x.answer
        assert tr["steps"].count("\n") >= d and len(tr["concise"]) < len(tr["steps"]) < len(tr["verbose"])


def _check_splits_and_level(task, name: str, level: int, **one_level_knobs):
    """`task`'s train and test problems are disjoint; `name` built with `one_level_knobs` gives level `level`."""
    train = {x.id for x in task.samples("train", 2000, seed=0)}
    test = {x.id for x in task.samples("test", 200, seed=0)}
    assert train and test and not train & test
    assert get_task(name, **one_level_knobs).samples("test", 1)[0].meta["level"] == level


def test_long_add_splits_are_disjoint_and_knobs_checked():
    _check_splits_and_level(LongAdd(min_digits=1, max_digits=3), "long_add", 2, min_digits=2, max_digits=2)
    with pytest.raises(ConfigError, match="min_digits"):
        LongAdd(min_digits=3, max_digits=2)
    with pytest.raises(ConfigError, match="max_digits must be <= 30"):
        LongAdd(max_digits=31)


def test_add_chain_by_hand():
    t = AddChain(min_terms=4, max_terms=4)
    p = [x for x in t.samples("train", 6000, seed=0) if x.prompt == "sum: 3+5+8+2\n"]
    assert p, "3+5+8+2 should be a train problem"
    x = p[0]
    assert x.answer == "18" and x.meta["level"] == 4
    assert x.meta["traces"]["steps"] == "3+5=8\n8+8=16\n16+2=18\n<answer>18</answer>"
    assert x.meta["traces"]["verbose"] == "3+5=8, left 8+2\n8+8=16, left 2\n16+2=18, done\n<answer>18</answer>"
    assert x.meta["traces"]["concise"] == "<answer>18</answer>"
    assert t.score(x, x.meta["traces"]["steps"]).correct and not t.score(x, "<answer>17</answer>").correct
    # modulo 10: every line keeps the running value modulo 10
    m = [x for x in AddChain(min_terms=4, max_terms=4, modulus=10).samples("train", 6000, seed=0)
         if x.prompt == "sum mod 10: 3+5+8+2\n"]
    assert m and m[0].answer == "8" and m[0].meta["traces"]["steps"] == "3+5=8\n8+8=6\n6+2=8\n<answer>8</answer>"
    with pytest.raises(ConfigError, match="modulus must be 0"):
        AddChain(modulus=1)



def test_labelled_add_chain_by_hand():
    t = AddChain(min_terms=4, max_terms=4, modulus=10, labelled=True)
    m = [x for x in t.samples("train", 6000, seed=0) if x.prompt == "sum mod 10: a3 b5 c8 d2\n"]
    assert m, "3+5+8+2 should be a train problem"
    x = m[0]
    assert x.answer == "8" and x.meta["level"] == 4
    assert x.meta["traces"]["steps"] == "a 3\nb 3+5=8\nc 8+8=6\nd 6+2=8\n<answer>8</answer>"
    assert x.meta["traces"]["verbose"] == ("a 3, left b5 c8 d2\nb 3+5=8, left c8 d2\nc 8+8=6, left d2\n"
                                           "d 6+2=8, done\n<answer>8</answer>")
    for style, text in x.meta["traces"].items():
        assert classify_style(text, "add_chain") == style
    assert t.score(x, x.meta["traces"]["steps"]).correct and not t.score(x, "<answer>7</answer>").correct
    with pytest.raises(ConfigError, match="max_terms must be <= 26"):
        AddChain(max_terms=27, labelled=True)
    with pytest.raises(ConfigError, match="labelled must be true or false"):
        AddChain(labelled="yes")


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 26), st.sampled_from([0, 7, 10]))
def test_labelled_add_chain_lines_follow_the_labels(seed, n, m):
    for x in AddChain(min_terms=n, max_terms=n, modulus=m, labelled=True, style_weights=(1, 1, 1)).samples(
            "test", 3, seed=seed):
        shown = x.prompt.split(": ", 1)[1].split()
        labels, terms = [w[0] for w in shown], [int(w[1:]) for w in shown]
        assert labels == [chr(ord("a") + i) for i in range(n)] and x.meta["level"] == n
        lines = x.meta["traces"]["steps"].split("\n")[:-1]
        run = terms[0] % m if m else terms[0]
        assert lines[0] == f"a {run}"
        for lab, v, line in zip(labels[1:], terms[1:], lines[1:]):  # each line adds its label's term
            nxt = (run + v) % m if m else run + v
            assert line == f"{lab} {run}+{v}={nxt}"
            run = nxt
        assert len(lines) == n and x.answer == str(run) == str(sum(terms) % m if m else sum(terms))
        for style, text in x.meta["traces"].items():
            assert classify_style(text, "add_chain") == classify_style(text) == style

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 12), st.integers(2, 9))
def test_add_chain_traces_reach_the_sum_and_grow_with_the_level(seed, n, top):
    t = AddChain(min_terms=n, max_terms=n, max_operand=top, style_weights=(1, 1, 1))
    for x in t.samples("test", 5, seed=seed):
        terms = list(map(int, x.prompt.removeprefix("sum: ").strip().split("+")))
        assert len(terms) == n == x.meta["level"] and all(1 <= v <= top for v in terms)
        tr = x.meta["traces"]
        assert extract_answer(tr["concise"]) == extract_answer(tr["steps"]) == extract_answer(tr["verbose"]) \
            == x.answer == str(sum(terms))
        assert tr["steps"].count("\n") == n - 1 and len(tr["concise"]) < len(tr["steps"]) < len(tr["verbose"])
        for style, text in tr.items():  # the style classifier knows the shapes, with and without the task name
            assert classify_style(text, "add_chain") == classify_style(text) == style


def test_add_chain_splits_are_disjoint_and_knobs_checked():
    _check_splits_and_level(AddChain(min_terms=2, max_terms=4), "add_chain", 3, min_terms=3, max_terms=3)
    with pytest.raises(ConfigError, match="min_terms"):
        AddChain(min_terms=5, max_terms=4)
    with pytest.raises(ConfigError, match="max_operand must be in"):
        AddChain(max_operand=12)
    with pytest.raises(ConfigError, match="max_terms must be <= 30"):
        AddChain(max_terms=31)


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@pytest.fixture(scope="module")
def bpe():
    corpus = [s.prompt + s.solution for s in LongAdd(style_weights=(1, 1, 1)).samples("train", 500, seed=0)]
    return build_bpe_tokenizer(corpus, vocab_size=300)


@settings(max_examples=100, deadline=None)
@given(texts)
def test_bpe_round_trips_any_text(bpe, text):
    ids = bpe(text).input_ids
    assert ids[0] == bpe.bos_token_id and bpe.unk_token_id not in ids
    assert bpe.decode(ids, skip_special_tokens=True) == text


def test_bpe_specials_digits_and_merges(bpe, tmp_path):
    assert [bpe.pad_token_id, bpe.eos_token_id, bpe.bos_token_id, bpe.unk_token_id] == [0, 1, 2, 3]
    toks = bpe.convert_ids_to_tokens(bpe("add: 48173+25\n", add_special_tokens=False).input_ids)
    assert [t for t in toks if any(c.isdigit() for c in t)] == list("4817325")  # one digit per token
    assert 260 < len(bpe) <= 300 and any(len(t) > 1 and not t.startswith("<") for t in bpe.get_vocab())
    bpe.save_pretrained(tmp_path / "t")
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path / "t")
    assert again("add: 12+3\n").input_ids == bpe("add: 12+3\n").input_ids
    with pytest.raises(ConfigError, match="vocab_size must be >= 260"):
        build_bpe_tokenizer(["x"], vocab_size=100)


def test_the_default_organism_keeps_its_hash_and_the_preset_has_its_own():
    shipped = json.loads((__import__("lengthrl").models.organism.SHIPPED_ORGANISM / "organism.json").read_text())
    assert OrganismConfig().hash() == shipped["hash"]  # new fields at their defaults do not enter the hash
    r = make_config(**preset("reasoning"))
    assert r.tokenizer == "bpe" and r.hash() != OrganismConfig().hash()
    assert make_config(**preset("reasoning", bpe_vocab_size=400)).hash() != r.hash()
    with pytest.raises(ConfigError, match="valid: reasoning"):
        preset("nope")
    with pytest.raises(ConfigError, match="tokenizer must be"):
        make_config(tokenizer="wordpiece")


def test_a_reasoning_organism_builds_and_trains(tmp_path):
    from transformers import AutoTokenizer

    from lengthrl.train.validate import build_config
    from lengthrl.train.loop import train

    small = {"arch": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
             "intermediate_size": 64, "max_position_embeddings": 256, "tie_word_embeddings": True}
    d = build_organism(out_dir=tmp_path / "org", log=None, **preset("reasoning", steps=3, n_train=200, n_eval=4,
                                                                     model=small, bpe_vocab_size=300))
    info = json.loads((d / "organism.json").read_text())
    assert info["config"]["tokenizer"] == "bpe" and info["config"]["tasks"] == ["long_add"]
    tok = AutoTokenizer.from_pretrained(d)
    assert 260 < len(tok) <= 300
    cfg = build_config(extra=dict(model=str(d), task="long_add", task_args={"max_digits": 3}, train_prompts=16,
                                  eval_prompts=0, prompts_per_step=2, group_size=2, max_new_tokens=16, steps=1,
                                  checkpoint_every=0, log_every=0, threads=1))
    tr = train(cfg, tmp_path / "run", progress=False, evaluate=False)
    row = tr.metrics.rows()[-1]
    assert row["len/mean"] > 0 and "acc" in row
    assert "reasoning" in PRESETS


@pytest.mark.parametrize("argv, steps", [([], PRESETS["reasoning"]["steps"]), (["--steps", "7"], 7)])
def test_organism_cli_with_the_preset_passes_one_steps(monkeypatch, tmp_path, argv, steps):
    """`lengthrl organism --preset reasoning` (with or without --steps) calls the builder with one `steps`:
    the preset's, or the flag's when given."""
    import lengthrl.models.organism as org
    from lengthrl.cli import main

    seen = {}

    def fake_build(**kw):
        seen.update(kw)
        return tmp_path

    monkeypatch.setattr(org, "build_organism", fake_build)
    assert main(["organism", "--preset", "reasoning", "--out", str(tmp_path), *argv]) == 0
    assert seen["steps"] == steps and seen["tokenizer"] == "bpe"
