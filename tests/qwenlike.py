"""A locally built stand-in for a Qwen2 instruct checkpoint's tokenizer: byte-level BPE trained on a few
sentences, the special tokens <|endoftext|>, <|im_start|>, <|im_end|> and Qwen2-Instruct's chat template."""

from __future__ import annotations

QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = ["What is 12 plus 7? Solve step by step; end with a line '#### <answer>'.",
          "The answer is 19.\n#### 19", "You are a helpful assistant. Be brief.",
          "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."] * 20


def qwen_like_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = QWEN_TEMPLATE
    return fast


def qwen_like_model_dir(out, **spec):
    """A tiny random Qwen2 model with that tokenizer (saved with its chat template)."""
    from lengthrl.models import save_tiny_random_model

    return save_tiny_random_model(out, arch="qwen2", seed=0, tokenizer=qwen_like_tokenizer(), **spec)
