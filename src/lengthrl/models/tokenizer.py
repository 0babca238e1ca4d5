"""A character-level tokenizer built locally with `tokenizers`, saved as a `PreTrainedTokenizerFast` directory.

One token per character of printable ASCII (plus newline), and four special tokens: ``<pad>``, ``<eos>``,
``<bos>``, ``<unk>``. Encoding a text with special tokens prepends ``<bos>`` (like Llama tokenizers); decoding
concatenates the characters, so ``decode(encode(text)) == text`` for any text over the alphabet. Response
length in tokens is then the number of characters (plus the EOS token).
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from lengthrl.errors import ConfigError

SPECIAL_TOKENS: dict[str, str] = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}
# printable ASCII without tab/carriage-return/vertical-tab/form-feed, plus newline
DEFAULT_CHARS: str = "".join(c for c in string.printable if c not in "\t\r\x0b\x0c")


def build_char_tokenizer(chars: str = DEFAULT_CHARS, out_dir: str | Path | None = None) -> PreTrainedTokenizerFast:
    """A character-level `PreTrainedTokenizerFast` over `chars`; saved to `out_dir` when given.

    Ids: 0 ``<pad>``, 1 ``<eos>``, 2 ``<bos>``, 3 ``<unk>``, then the characters in the order given.
    """
    uniq = list(dict.fromkeys(chars))
    if not uniq:
        raise ConfigError("build_char_tokenizer: chars is empty; give the alphabet of the tasks")
    specials = list(SPECIAL_TOKENS.values())
    clash = [c for c in uniq if c in specials]
    if clash:
        raise ConfigError(f"build_char_tokenizer: chars {clash!r} collide with the special tokens")
    vocab = {tok: i for i, tok in enumerate(specials + uniq)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")  # (?m): '.' matches newline
    tok.decoder = decoders.Fuse()
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)
    fast.padding_side = "left"
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def build_bpe_tokenizer(texts, vocab_size: int = 512, out_dir: str | Path | None = None,
                        min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts` (an iterable of strings), as real models
    use: GPT-2's byte-level alphabet (any UTF-8 text encodes, no `<unk>`), digits split one per token before the
    merges (as the Llama and Qwen tokenizers do, so numbers keep their digit structure), merges learned up to
    `vocab_size`. Same special tokens and ids 0-3 as `build_char_tokenizer`; encoding prepends ``<bos>``."""
    from tokenizers import trainers

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ConfigError(f"build_bpe_tokenizer: vocab_size must be >= {256 + len(SPECIAL_TOKENS)} (256 bytes and "
                          f"{len(SPECIAL_TOKENS)} special tokens), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)
    fast.padding_side = "left"
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast
