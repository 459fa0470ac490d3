"""An offline tokenizer in CLIP's file format, for generators and concept models built from configs.

A byte-level BPE learned from a word list so that each word is one token; any other text falls back to smaller
pieces down to single bytes (all 256 are in the vocabulary), never <unk>. The shapes world's models use it over
their caption words (probe.world.text.caption_words), the tiny test and benchmark pipelines over theirs
(probe.generators.tiny). Nothing is downloaded.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

__all__ = ["MODEL_MAX_LENGTH", "learn_bpe", "write_tokenizer"]


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_bpe(words: list[str]) -> list[tuple[str, str]]:
    """Greedy BPE merges that turn every word of ``words`` into a single symbol."""
    seqs = {w: tuple(list(w[:-1]) + [w[-1] + "</w>"]) for w in words}
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter = Counter()
        for seq in seqs.values():
            for a, b in zip(seq, seq[1:]):
                pairs[(a, b)] += 1
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in "".join(kv[0])]))[0]
        merges.append(best)
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = tuple(out)


MODEL_MAX_LENGTH = 32


def write_tokenizer(folder: str | Path, words: Iterable[str]):
    """Write a CLIPTokenizer (vocab.json, merges.txt, configs) whose vocabulary keeps each of ``words`` whole to
    ``folder``, and return it loaded."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(set(words))
    merges = learn_bpe(words)
    byte_chars = list(_bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars]
    seen = set(vocab_list)
    for a, b in merges:
        if a + b not in seen:
            vocab_list.append(a + b)
            seen.add(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m) for m in merges], model_max_length=MODEL_MAX_LENGTH)
    tok.save_pretrained(folder)
    return CLIPTokenizer.from_pretrained(folder)
