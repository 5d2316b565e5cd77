"""The word-level CLIP tokenizer of the embedded models: every caption word is one BPE token.

The trainers write it into a run's ``pipeline/tokenizer`` (deterministically, from the vocabulary alone); the
shipped pipelines hold the files it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from cachesearch.embedded.shapes._components import MAX_TOKENS, WORDS
from cachesearch.models._tokenizer import _bytes_to_unicode

__all__ = ["build_tokenizer_files", "load_tokenizer"]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bpe(symbols: list[str], merges: list[tuple[str, str]]) -> list[str]:
    """Apply byte-pair merges by rank (lowest first) to one word's symbols, as CLIP's tokenizer does."""
    ranks = {pair: i for i, pair in enumerate(merges)}
    syms = list(symbols)
    while len(syms) > 1:
        pairs = [(ranks.get((a, b), len(ranks)), i) for i, (a, b) in enumerate(zip(syms, syms[1:], strict=False))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        syms = syms[:i] + [syms[i] + syms[i + 1]] + syms[i + 2 :]
    return syms


def build_tokenizer_files(folder: Path, words: tuple[str, ...] = WORDS) -> None:
    """Write a CLIP BPE tokenizer (vocab.json, merges.txt, configs) where every word in ``WORDS`` is one token.

    The base vocabulary is CLIP's 256 byte symbols and their end-of-word forms (so any text still tokenizes);
    merges build each vocabulary word left to right.
    """
    folder.mkdir(parents=True, exist_ok=True)
    base = [char for _, char in _bytes_to_unicode()]
    vocab_list: list[str] = base + [b + "</w>" for b in base]
    merges: list[tuple[str, str]] = []
    seen = set(vocab_list)
    for word in words:
        # run BPE with the merges so far; join whatever pieces remain left to right with new (last-ranked)
        # merges. A new merge is only picked once no earlier merge applies, so words done before stay done.
        syms = _bpe(list(word[:-1]) + [word[-1] + "</w>"], merges)
        cur = syms[0]
        for nxt in syms[1:]:
            merges.append((cur, nxt))
            cur = cur + nxt
            if cur not in seen:
                vocab_list.append(cur)
                seen.add(cur)
    vocab_list += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    vocab_text = json.dumps(vocab, ensure_ascii=False, indent=0) + "\n"
    (folder / "vocab.json").write_text(vocab_text, encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_TOKENS,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def load_tokenizer(folder: Path, words: tuple[str, ...] = WORDS):  # -> CLIPTokenizer
    """Load the tokenizer written by :func:`build_tokenizer_files` and check that every word is one token."""
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    for word in words:
        ids = tok(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"tokenizer splits {word!r} into {ids}; expected one token")
    return tok
