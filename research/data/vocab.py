"""Vocabularies for text: characters, or WordPiece trained on the training text; JSON round trip.

Id 0 is always [PAD] (and, at character level, every character the training text lacks).
Pure host-side code: no JAX, no files (callers read and write the JSON).
"""

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from research.errors import UserError

CHAR_SPECIALS = ("[PAD]", "[CLS]", "[MASK]")
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[MASK]")


class CharVocabulary:
    """The specials, then every distinct character of the training text in sorted order."""

    specials = CHAR_SPECIALS

    def __init__(self, tokens: Sequence[str]):
        self.tokens = tuple(tokens)
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], vocab_size: int = 0) -> "CharVocabulary":
        """`vocab_size` is ignored: the characters of the text decide it."""
        del vocab_size
        chars = set().union(*map(set, texts))
        return cls(CHAR_SPECIALS + tuple(sorted(chars)))

    @property
    def size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        """text -> ids [len(text)] int32; a character unseen in training becomes 0."""
        return np.fromiter((self._ids.get(c, 0) for c in text), np.int32, len(text))

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """ids -> text, dropping special tokens."""
        return "".join(self.tokens[i] for i in ids if i >= len(self.specials))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "char", "vocab_size": self.size, "tokens": list(self.tokens)}


class WordPieceVocabulary:
    """BERT's WordPiece subwords, trained with HuggingFace `tokenizers`.

    Why that library: it is the standard implementation (the one BERT checkpoints ship with), it
    trains a vocabulary on our own training text in a second or two, offline, and its JSON
    format saves the whole tokenizer (normaliser, pre-tokeniser, vocabulary) in one file.
    """

    specials = WORDPIECE_SPECIALS

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, texts: Iterable[str], vocab_size: int) -> "WordPieceVocabulary":
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=list(WORDPIECE_SPECIALS), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        # The trainer numbers tokens in hash-map order, which changes from call to call, and
        # breaks ties between equally frequent merges the same way, so even the set of tokens
        # may differ in a few. Sorted ids at least make an equal set number its tokens equally;
        # a resumed run reads its saved vocab.json (research.train.workdir).
        learned = sorted(set(tokenizer.get_vocab()) - set(WORDPIECE_SPECIALS))
        ids = {token: i for i, token in enumerate([*WORDPIECE_SPECIALS, *learned])}
        tokenizer.model = models.WordPiece(ids, unk_token="[UNK]")
        return cls(tokenizer)

    @property
    def size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text).ids, np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(texts))
        return [np.asarray(e.ids, np.int32) for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "wordpiece",
            "vocab_size": self.size,
            "tokenizer": json.loads(self.tokenizer.to_str()),
        }


Vocabulary = CharVocabulary | WordPieceVocabulary
KINDS = {"char": CharVocabulary, "wordpiece": WordPieceVocabulary}


def build(kind: str, texts: Iterable[str], vocab_size: int) -> Vocabulary:
    """A vocabulary of `kind` ("char" or "wordpiece") fitted to the training texts."""
    if kind not in KINDS:
        raise UserError(f"data.tokenizer={kind!r} is unknown; use one of {', '.join(KINDS)}.")
    return KINDS[kind].build(texts, vocab_size)


def from_json(data: dict[str, Any]) -> Vocabulary:
    """Inverse of `to_json`, e.g. of a run's vocab.json."""
    if data.get("kind") == "char":
        return CharVocabulary(data["tokens"])
    if data.get("kind") == "wordpiece":
        from tokenizers import Tokenizer

        return WordPieceVocabulary(Tokenizer.from_str(json.dumps(data["tokenizer"])))
    raise UserError(f"Not a vocabulary (kind {data.get('kind')!r}); expected a run's vocab.json.")


def info(vocabulary: Vocabulary) -> dict[str, Any]:
    """What models and tasks need: vocab_size, the special ids, and the JSON for vocab.json."""
    specials = vocabulary.specials
    return {
        "vocab_size": vocabulary.size,
        "num_special": len(specials),
        "cls_id": specials.index("[CLS]"),
        "mask_id": specials.index("[MASK]"),
        "vocabulary": vocabulary.to_json(),
    }
