"""Sequence datasets: token windows for language models, padded labelled text for classifiers,
and images read row by row. Host-side numpy only; TensorFlow is imported only for TFDS sources.

Language-model rows are `tokens` [n, seq_len + 1] int32; classifier rows are `tokens`
[n, seq_len] int32 starting with [CLS], and `label` [n] int32. Pad id 0 fills both.
"""

import itertools
import json
import pathlib
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import ml_collections
import numpy as np
from ml_collections.config_dict import placeholder

from research.checks import PATH, integer, one_of
from research.data import (
    SOURCES,
    Arrays,
    Dataset,
    Records,
    carve_validation,
    embedded,
    keep_in_memory,
    transform,
    vocab,
)
from research.errors import UserError

SPLITS = ("train", "val", "test")
MIN_CHARACTERS = 31  # the shortest text whose 5% val and test parts get 2 characters each
# The allowed values of the data fields `text_fields` adds; TOKENS are those every text source
# reads (val_path and test_path only labelled_text does), TFDS those the TFDS ones add.
TEXT_CHECKS = {
    "seq_len": integer(1),
    "tokenizer": one_of(*vocab.KINDS),
    "vocab_size": integer(len(vocab.WORDPIECE_SPECIALS) + 1),
    "vocab_path": PATH,
    "val_path": PATH,
    "test_path": PATH,
}
TOKENS = ("seq_len", "tokenizer", "vocab_size", "vocab_path")
TFDS = ("tfds_data_dir", "download")


def text_fields(seq_len: int, tokenizer: str = "char", vocab_size: int = 8000) -> dict[str, Any]:
    """The data config keys these loaders read; experiments add them with `config.data.update`.

    vocab_size is WordPiece's target size; vocab_path (a run's vocab.json) reuses a vocabulary,
    as fine-tuning must; val_path and test_path give a labelled file's official other splits.
    """
    return {
        "seq_len": seq_len,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "vocab_path": placeholder(str),
        "val_path": placeholder(str),
        "test_path": placeholder(str),
    }


SOURCES.declare({**text_fields(seq_len=1), "seq_len": None}, TEXT_CHECKS)  # seq_len: no default


def split_starts(length: int) -> dict[str, int]:
    """Where each split starts in a text of `length` characters: first 90% train, next 5%
    validation, last 5% test, by position (no shuffling of text)."""
    return {"train": 0, "val": int(length * 0.9), "test": int(length * 0.95)}


def positional_split(text: str) -> dict[str, str]:
    starts = [*split_starts(len(text)).values(), len(text)]
    return {split: text[starts[i] : starts[i + 1]] for i, split in enumerate(SPLITS)}


def windows(ids: np.ndarray, seq_len: int) -> np.ndarray:
    """ids [n] -> tokens [ceil((n - 1) / seq_len), seq_len + 1] int32, padded with 0 at the end.

    Window i is ids[i * seq_len : (i + 1) * seq_len + 1]: consecutive windows share one token, so
    the next-token targets (tokens[:, 1:]) tile ids[1:] exactly once.
    """
    count = max(-(-(len(ids) - 1) // seq_len), 1)
    padded = np.zeros(count * seq_len + 1, np.int32)
    padded[: len(ids)] = ids
    return padded[np.arange(count)[:, None] * seq_len + np.arange(seq_len + 1)]


def window_records(ids: np.ndarray, seq_len: int) -> Records:
    """`windows(ids, seq_len)` read by row index, without materialising them: for token ids
    mapped from disk."""
    count = max(-(-(len(ids) - 1) // seq_len), 1)

    def read(rows: list[int]) -> list[Arrays]:
        tokens = np.zeros((len(rows), seq_len + 1), np.int32)
        for window, row in zip(tokens, rows, strict=True):
            piece = ids[row * seq_len : (row + 1) * seq_len + 1]
            window[: len(piece)] = piece
        return [{"tokens": window} for window in tokens]

    return Records(read, np.arange(count))


def _check_file(path: str | None, key: str) -> pathlib.Path:
    if not path:
        raise UserError(f"This dataset reads a local file: pass --config.{key}=FILE.")
    file = pathlib.Path(path)
    if not file.is_file():
        raise UserError(f"{key}={path!r} is not a file. Pass the path of an existing UTF-8 file.")
    return file


def _not_utf8(path: str, key: str, error: UnicodeDecodeError) -> UserError:
    return UserError(
        f"{key}={path!r} is not UTF-8 ({error.reason}). "
        "Convert it, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`."
    )


def _read_text(path: str | None, key: str) -> str:
    file = _check_file(path, key)
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(path, key, error) from None


PIECE = 1 << 22  # characters a streamed text file is read and tokenised in


def _stream(file: pathlib.Path, key: str, starts: dict[str, int] | None = None) -> Iterator:
    """A UTF-8 file as (split, piece) pairs of about PIECE characters, cut where a split starts
    and otherwise after the last newline or space (neither tokeniser here joins characters
    across one, so the pieces encode to the ids of the whole split). Without `starts`, all of
    it as the train split."""
    bounds = sorted(((start, split) for split, start in (starts or {"train": 0}).items()))
    position, carry, index = 0, "", 0
    try:
        with file.open(encoding="utf-8") as text:
            while chunk := text.read(PIECE):
                carry += chunk
                while index + 1 < len(bounds) and position + len(carry) >= bounds[index + 1][0]:
                    cut = bounds[index + 1][0] - position
                    yield bounds[index][1], carry[:cut]
                    position, carry, index = position + cut, carry[cut:], index + 1
                cut = max(carry.rfind("\n"), carry.rfind(" ")) + 1
                if cut:
                    yield bounds[index][1], carry[:cut]
                    position, carry = position + cut, carry[cut:]
    except UnicodeDecodeError as error:
        raise _not_utf8(str(file), key, error) from None
    yield bounds[index][1], carry
    for _, split in bounds[index + 1 :]:  # splits that start at the very end
        yield split, ""


def _characters(file: pathlib.Path, key: str) -> int:
    try:
        with file.open(encoding="utf-8") as text:
            return sum(len(chunk) for chunk in iter(lambda: text.read(PIECE), ""))
    except UnicodeDecodeError as error:
        raise _not_utf8(str(file), key, error) from None


def _ids_by_split(encoded: Iterable[tuple[str, np.ndarray]], on_disk: bool) -> dict:
    """Each split's token ids from (split, ids) pieces in one pass: joined in memory, or written
    to an anonymous temporary file per split in TMPDIR (gone when the process ends, however it
    ends; TMPDIR must be a disk, not tmpfs) and mapped back read-only."""
    if not on_disk:
        parts = {split: [np.zeros(0, np.int32)] for split in SPLITS}
        for split, ids in encoded:
            parts[split].append(ids)
        return {split: np.concatenate(ids) for split, ids in parts.items()}
    files = {split: tempfile.TemporaryFile(prefix=f"tokens_{split}_") for split in SPLITS}
    try:
        for split, ids in encoded:
            files[split].write(np.asarray(ids, np.int32).tobytes())
        for file in files.values():
            file.flush()
    except OSError as error:
        raise UserError(
            f"Could not write the token ids to a temporary file in {tempfile.gettempdir()!r}: "
            f"{error.strerror}. Free space there, or set TMPDIR to a disk with room for 4 bytes "
            "per token of data.path."
        ) from None
    empty = np.zeros(0, np.int32)
    return {s: np.memmap(f, np.int32, "r") if f.tell() else empty for s, f in files.items()}


def _vocabulary(config: ml_collections.ConfigDict, train_texts: Iterable[str]) -> vocab.Vocabulary:
    """The run's vocabulary: read from `vocab_path`, else fitted to the training text only."""
    if config.vocab_path:
        return vocab.from_json(json.loads(_read_text(config.vocab_path, "data.vocab_path")))
    return vocab.build(config.tokenizer, train_texts, config.vocab_size)


def _check_lengths(
    config: ml_collections.ConfigDict, characters: dict[str, int], ids: Arrays
) -> None:
    """Every split needs a target to score (else its mean divides by zero) and train one batch of
    windows; the message counts what there is and says which batch_size or seq_len would fit."""
    for split in SPLITS:
        if not np.count_nonzero(ids[split][1:]):  # id 0: pad, or a character train lacks
            raise UserError(
                f"The {split} split of data.name={config.name!r} has nothing to score: its "
                f"{characters[split]} characters make {len(ids[split])} tokens, and none after "
                "the first is in the vocabulary of the train split (what it lacks becomes "
                "padding, which is not scored). Every split needs 2 tokens or more, one to read "
                "and one to predict. Use a longer text, one whose parts share characters."
            )
    tokens, seq_len, batch_size = len(ids["train"]), config.seq_len, config.batch_size
    count = -(-(tokens - 1) // seq_len)  # windows, as `windows` cuts them
    if count < batch_size:
        fits = (tokens - 1) // batch_size  # this seq_len makes at least batch_size windows
        raise UserError(
            f"The train split of data.name={config.name!r} has {tokens} tokens "
            f"({characters['train']} characters): {count} window(s) of data.seq_len={seq_len}, "
            f"but one batch of data.batch_size={batch_size} needs {batch_size} windows, "
            f"{batch_size * seq_len + 1} tokens. Pass --config.data.batch_size={count}"
            + (f", or --config.data.seq_len={fits}" if fits else "")
            + ", or use a longer text."
        )


def language_dataset(config: ml_collections.ConfigDict, texts: dict[str, str]) -> Dataset:
    """Texts of train/val/test -> windows of `config.seq_len + 1` tokens (see `windows`)."""
    vocabulary = _vocabulary(config, [texts["train"]])
    ids = {split: vocabulary.encode(texts[split]) for split in SPLITS}
    _check_lengths(config, {split: len(texts[split]) for split in SPLITS}, ids)
    splits = {split: {"tokens": windows(ids[split], config.seq_len)} for split in SPLITS}
    return Dataset(splits, vocab.info(vocabulary))


def labelled_dataset(
    config: ml_collections.ConfigDict, examples: dict[str, Arrays], num_classes: int
) -> Dataset:
    """examples: split -> {"text": [n] str, "label": [n] int} -> [CLS] + tokens, cut to seq_len."""
    vocabulary = _vocabulary(config, list(examples["train"]["text"]))
    info = vocab.info(vocabulary)

    def rows(texts: np.ndarray) -> np.ndarray:
        tokens = np.zeros((len(texts), config.seq_len), np.int32)
        tokens[:, 0] = info["cls_id"]
        for row, ids in zip(tokens, vocabulary.encode_batch(list(texts)), strict=True):
            ids = ids[: config.seq_len - 1]
            row[1 : 1 + len(ids)] = ids
        return tokens

    splits = {
        s: {"tokens": rows(a["text"]), "label": a["label"].astype(np.int32)}
        for s, a in examples.items()
    }
    return Dataset(splits, {**info, "num_classes": num_classes})


def read_labelled(path: str, key: str = "data.path", classes: np.ndarray | None = None) -> Arrays:
    """A file of lines `<label> <text>`, or a TSV whose header names `sentence` and `label`.

    Returns {"text": [n] object, "label": [n] int32}; a bad line, or a label outside `classes`
    (the training file's labels, when reading its val or test file), is a UserError naming the
    file and line number. Blank lines are skipped.
    """
    lines = _read_text(path, key).split("\n")
    header = lines[0].split("\t")
    tsv = "sentence" in header and "label" in header
    texts, labels = [], []
    for number, line in enumerate(lines[1:] if tsv else lines, start=2 if tsv else 1):
        if not line.strip():
            continue
        if tsv:
            fields = line.split("\t")
            ok = len(fields) == len(header)
            named = dict(zip(header, fields, strict=False))
            label, text = named.get("label", ""), named.get("sentence", "")
        else:
            label, _, text = line.partition(" ")
            ok = bool(text.strip())
        if not (ok and label.strip().isdigit()):
            expected = f"{len(header)} tab-separated fields" if tsv else "'<label> <text>'"
            raise UserError(
                f"{path}, line {number}: expected {expected} with a non-negative integer label, "
                f"got {line[:80]!r}. Fix or remove that line."
            )
        if classes is not None and int(label) not in classes:
            raise UserError(
                f"{path}, line {number}: label {int(label)} is not a class of the training file "
                f"data.path (its labels are {', '.join(map(str, classes))}); the model would "
                "have an output no training line teaches. Fix that line, or pass a "
                f"{key} of the training file's task."
            )
        texts.append(text.strip())
        labels.append(int(label))
    if not texts:
        raise UserError(f"{path} holds no labelled lines.")
    return {"text": np.array(texts, dtype=object), "label": np.array(labels, np.int32)}


def _tfds_arrays(config: ml_collections.ConfigDict, name: str, splits: dict[str, str]) -> dict:
    """Reads whole TFDS splits as numpy ({ours: {feature: array}}) from `splits` {ours: theirs}."""
    from research.data.tfds_source import builder, import_tfds, read_prepared

    tfds = import_tfds()
    dataset_builder = builder(name, config.tfds_data_dir)

    def read_split(split: str) -> Arrays:
        chunks = list(tfds.as_numpy(dataset_builder.as_dataset(split=split).batch(10_000)))
        return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}

    def read() -> dict:
        return {ours: read_split(theirs) for ours, theirs in splits.items()}

    return read_prepared(dataset_builder, name, config.download, read)


def _decode(strings: np.ndarray) -> np.ndarray:
    return np.array([s.decode("utf-8") for s in strings], dtype=object)


@SOURCES.register("python_docs", reads=TOKENS)
def python_docs(config: ml_collections.ConfigDict) -> Dataset:
    """The offline default: Python's own English documentation (pydoc_data, ~465k characters)."""
    from pydoc_data.topics import topics

    return language_dataset(config, positional_split("\n\n".join(map(topics.get, sorted(topics)))))


@SOURCES.register("text_file", reads=("path", "storage", *TOKENS))
def text_file(config: ml_collections.ConfigDict) -> Dataset:
    """Any UTF-8 file at `data.path`, split 90/5/5 by position. Read in pieces, three times
    (count, fit the vocabulary on train, encode): a file larger than memory is tokenised piece
    by piece into temporary files that batches read by index (data.storage; "auto" keeps up to
    MEMORY_BUDGET_BYTES of ids and windows in memory)."""
    file = _check_file(config.path, "data.path")
    length = _characters(file, "data.path")
    if length < MIN_CHARACTERS:
        raise UserError(
            f"data.path={config.path!r} has {length} characters, but text_file needs at "
            f"least {MIN_CHARACTERS}: it keeps the last 5% for validation and 5% for test, and "
            "each needs 2 characters (one to read, one to predict). Use a longer text."
        )
    starts = split_starts(length)
    pieces = lambda: _stream(file, "data.path", starts)  # the file read again on each call
    train = itertools.takewhile(lambda piece: piece[0] == "train", pieces())  # stops at val
    vocabulary = _vocabulary(config, (text for _, text in train))
    on_disk = not keep_in_memory(config, 8 * length)  # ids and windows, int32, ~1 per char
    ids = _ids_by_split(((s, vocabulary.encode(text)) for s, text in pieces()), on_disk)
    bounds = [*starts.values(), length]
    _check_lengths(config, {s: bounds[i + 1] - bounds[i] for i, s in enumerate(SPLITS)}, ids)
    rows = window_records if on_disk else lambda ids, seq_len: {"tokens": windows(ids, seq_len)}
    splits = {split: rows(ids[split], config.seq_len) for split in SPLITS}
    return Dataset(splits, vocab.info(vocabulary))


@SOURCES.register("tiny_shakespeare", reads=(*TOKENS, *TFDS))
def tiny_shakespeare(config: ml_collections.ConfigDict) -> Dataset:
    """TFDS `tiny_shakespeare` with its own train/validation/test texts."""
    arrays = _tfds_arrays(
        config, "tiny_shakespeare", {"train": "train", "val": "validation", "test": "test"}
    )
    return language_dataset(config, {s: "\n".join(_decode(a["text"])) for s, a in arrays.items()})


def _tfds_labelled(config: ml_collections.ConfigDict, name: str, text_key: str, test: str):
    """A TFDS text-classification set; validation is carved from train by a fixed permutation."""
    arrays = _tfds_arrays(config, name, {"train": "train", "test": test})
    examples = {s: {"text": _decode(a[text_key]), "label": a["label"]} for s, a in arrays.items()}
    train, val = carve_validation(examples["train"], config.validation_fraction)
    num_classes = int(examples["train"]["label"].max()) + 1
    examples = {"train": train, "val": val, "test": examples["test"]}
    return labelled_dataset(config, examples, num_classes)


@SOURCES.register("imdb_reviews", reads=(*TOKENS, *TFDS, "validation_fraction"))
def imdb_reviews(config: ml_collections.ConfigDict) -> Dataset:
    return _tfds_labelled(config, "imdb_reviews", "text", test="test")


@SOURCES.register("glue/sst2", reads=(*TOKENS, *TFDS, "validation_fraction"))
def glue_sst2(config: ml_collections.ConfigDict) -> Dataset:
    """GLUE's test labels are hidden, so its validation split serves as our test split."""
    return _tfds_labelled(config, "glue/sst2", "sentence", test="validation")


@SOURCES.register(
    "labelled_text", reads=(*TOKENS, "path", "val_path", "test_path", "validation_fraction")
)
def labelled_text(config: ml_collections.ConfigDict) -> Dataset:
    """`data.path` (+ optional `val_path`, `test_path`); missing splits are carved from train.

    The classes are the training file's labels: a val or test line with another is an error.
    """
    train = read_labelled(config.path)
    classes = np.unique(train["label"])
    if config.test_path:
        test = read_labelled(config.test_path, "data.test_path", classes)
    else:
        train, test = carve_validation(train, 0.1, seed=1)
    if config.val_path:
        val = read_labelled(config.val_path, "data.val_path", classes)
    else:
        train, val = carve_validation(train, config.validation_fraction)
    examples = {"train": train, "val": val, "test": test}
    empty = [split for split, arrays in examples.items() if not len(arrays["label"])]
    if empty:
        sizes = ", ".join(f"{split} {len(a['label'])}" for split, a in examples.items())
        raise UserError(
            f"data.path={config.path!r} is too short to carve a {' and a '.join(empty)} "
            f"split from (lines per split: {sizes}; test takes 10% and val "
            f"data.validation_fraction={config.validation_fraction} of the rest). Add lines, or "
            "pass --config.data.val_path=FILE and --config.data.test_path=FILE."
        )
    return labelled_dataset(config, examples, int(classes[-1]) + 1)


def as_rows(dataset: Dataset) -> Dataset:
    """Images [n, height, width, 1] as sequences of `height` rows of `width` features.

    The one-channel mean and std still apply, so the classification task normalises them.
    """
    drop_channel = lambda arrays: {**arrays, "image": arrays["image"][..., 0]}
    splits = {name: transform(split, drop_channel) for name, split in dataset.splits.items()}
    return Dataset(splits, {**dataset.info, "input_shape": dataset.info["input_shape"][:2]})


@SOURCES.register("digits_rows", reads=("validation_fraction",))
def digits_rows(config: ml_collections.ConfigDict) -> Dataset:
    """scikit-learn's digits (the embedded split) read as 8 rows of 8 pixels."""
    return as_rows(embedded.digits(config))


@SOURCES.register("mnist_rows", reads=SOURCES.unregistered_reads)  # as TFDS mnist
def mnist_rows(config: ml_collections.ConfigDict) -> Dataset:
    """TFDS `mnist` read as 28 rows of 28 pixels: the sequential-MNIST task."""
    from research.data import tfds_source

    mnist = ml_collections.ConfigDict(config.to_dict())
    mnist.name = "mnist"
    return as_rows(tfds_source.load(mnist))
