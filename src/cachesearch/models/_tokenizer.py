"""CLIP and T5 tokenizers built offline from generated character-level vocabularies.

Real CLIP tokenizers (``vocab.json`` + ``merges.txt``, ~49 k entries) can only be downloaded from the hub.
For random-weight latency presets (``arch:sd15``, ``arch:sdxl``) and tiny test pipelines we only need a
tokenizer with the right *interface*: it must produce ``model_max_length`` ids, pad and truncate like CLIP's,
and put ``<|endoftext|>`` at the highest id (CLIP text models with the legacy ``eos_token_id=2`` pool at
``input_ids.argmax(-1)``).

The generated vocabulary holds the 256 byte-level symbols, the same 256 symbols with CLIP's end-of-word
suffix ``</w>``, then ``<|startoftext|>`` and ``<|endoftext|>`` (514 ids in all) and **no merges**, so a
prompt tokenizes to one id per character (per byte, for non-ASCII text). Sequence lengths after padding are
exactly those of the real tokenizer (``max_length`` padding to 77), so the cost of the text encoder and of
cross-attention is unchanged; the token ids themselves are meaningless, which is fine for latency work and
never for quality work.

The T5 tokenizer (FLUX's ``tokenizer_2``, SD3's ``tokenizer_3``, PixArt's ``tokenizer``; real ones need a
SentencePiece model from the hub) is built the same way with the ``tokenizers`` library: ``<pad>`` = 0,
``</s>`` = 1, ``<unk>`` = 2, then one id per printable ASCII character and ``</s>`` appended, padded and
truncated to ``max_length`` like T5's.
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer, PreTrainedTokenizerFast

__all__ = ["char_clip_tokenizer", "char_t5_tokenizer", "char_vocab_size"]

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_END_OF_WORD = "</w>"


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> tuple[tuple[int, str], ...]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table, in CLIP's vocabulary order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return tuple((byte, chr(code)) for byte, code in zip(printable, codes))


def _char_vocab() -> dict[str, int]:
    symbols = [char for _, char in _bytes_to_unicode()]
    tokens = symbols + [s + _END_OF_WORD for s in symbols] + [_BOS, _EOS]
    return {token: index for index, token in enumerate(tokens)}


def char_vocab_size() -> int:
    """Number of ids the generated tokenizer emits (514); a text encoder's vocab_size must be >= this."""
    return len(_char_vocab())


def char_clip_tokenizer(*, model_max_length: int = 77, pad_token: str = _EOS) -> CLIPTokenizer:
    """Build a :class:`~transformers.CLIPTokenizer` from a generated character-level vocabulary (no download).

    Args:
        model_max_length: Padding/truncation length (77 for every Stable Diffusion text encoder).
        pad_token: ``"<|endoftext|>"`` like SD 1.x and SDXL's first tokenizer, or ``"!"`` like SDXL's
            second (OpenCLIP) tokenizer.

    Returns:
        A tokenizer whose ids are below :func:`char_vocab_size`, with ``<|endoftext|>`` the highest id.
        ``vocab.json`` and ``merges.txt`` are written to a temporary directory that is removed once the
        tokenizer is loaded; the tokenizer keeps everything in memory and ``save_pretrained`` works.

    Raises:
        ValueError: if ``model_max_length`` < 2 or ``pad_token`` is not in the vocabulary.
    """
    if model_max_length < 2:
        raise ValueError(f"model_max_length must be >= 2 (BOS + EOS), got {model_max_length}")
    vocab = _char_vocab()
    if pad_token not in vocab:
        raise ValueError(f"pad_token {pad_token!r} is not in the generated vocabulary (use {_EOS!r} or '!')")
    with tempfile.TemporaryDirectory(prefix="cachesearch-tok-") as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        # A merges file with only its header: BPE keeps every word split into single symbols.
        (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizer(
            str(folder / "vocab.json"),
            str(folder / "merges.txt"),
            model_max_length=model_max_length,
            pad_token=pad_token,
        )


def char_t5_tokenizer(*, model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A T5-style tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, one id per printable ASCII character, 98 ids)
    built offline; prompts end with ``</s>`` and pad with ``<pad>`` as T5's do. A text encoder's
    ``vocab_size`` must be >= 98."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    if model_max_length < 2:
        raise ValueError(f"model_max_length must be >= 2 (one token + </s>), got {model_max_length}")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for code in range(32, 127):
        vocab[chr(code)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.decoder = decoders.Fuse()
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=model_max_length)
