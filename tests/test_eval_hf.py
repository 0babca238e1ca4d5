"""run_eval with a real (tiny, randomly initialised) transformers model and tokenizer behind generate()."""

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from lengthrl.eval.runner import run_eval
from lengthrl.tasks.base import Sample, Score, Task

WORDS = ["<pad>", "<eos>", "what", "is", "1", "2", "3", "?", "answer"]


def tiny_tokenizer():
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


@dataclass
class Batch:
    response_ids: torch.Tensor  # [P*n, T]
    response_mask: torch.Tensor  # [P*n, T]
    lengths: torch.Tensor  # [P*n]
    truncated: torch.Tensor  # [P*n]


class HFPolicy:
    """Sampling with transformers' generate; the response ends at the first EOS (kept in the length)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def generate(self, prompt_ids, n, params):
        rows = []
        for ids in prompt_ids:
            x = torch.tensor([ids])
            out = self.model.generate(x, do_sample=True, max_new_tokens=params["max_new_tokens"],
                                      num_return_sequences=n, pad_token_id=0, eos_token_id=1,
                                      attention_mask=torch.ones_like(x))
            rows += list(out[:, x.shape[1]:])
        T = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), T, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        trunc = torch.zeros(len(rows), dtype=torch.bool)
        for i, r in enumerate(rows):
            eos = (r == 1).nonzero()
            L = int(eos[0]) + 1 if len(eos) else len(r)
            ids[i, :L], mask[i, :L] = r[:L], 1
            trunc[i] = not len(eos)
        return Batch(ids, mask, mask.sum(1), trunc)


class AnswerIs3(Task):
    name = "answer3"

    def samples(self, split="train", n=None, seed=0):
        return [Sample(id=f"q{i}", prompt="what is 1 2 ?", answer="3") for i in range(n or 2)]

    def score(self, sample, response):
        ok = response.split()[-1:] == ["3"]
        return Score(correct=ok, reward=float(ok))


def test_run_eval_with_a_real_tiny_model():
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                      bos_token_id=1, eos_token_id=1, pad_token_id=0))
    res = run_eval(HFPolicy(model, tok), AnswerIs3(), n_samples=3, ks=(1, 3), sampling={"max_new_tokens": 6},
                   n_prompts=2, progress=False)
    assert len(res.records) == 6
    for r in res.records:
        assert 1 <= r.length <= 6
        assert "<eos>" not in r.response and "<pad>" not in r.response  # special tokens skipped
        assert r.correct == (r.response.split()[-1:] == ["3"] and not r.truncated)  # truncated: wrong
        assert not r.truncated or r.length == 6  # only a response that used the whole budget is truncated
    assert 0.0 <= res.metrics["pass@1"] <= res.metrics["pass@3"] <= 1.0
