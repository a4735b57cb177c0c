"""Tests of the text and sequence datasets: vocabularies, splits, windows, readers, TFDS paths."""

import json
import re

import ml_collections
import numpy as np
import pytest
from conftest import mock_tfds

from research import data
from research.config import base_config
from research.data import SOURCES, embedded, text, vocab
from research.errors import UserError
from research.train.workdir import with_saved_vocabulary

SAMPLE = "The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs!\n"


def data_config(name: str, **fields) -> ml_collections.ConfigDict:
    """A data config as an experiment builds it: base_config's data fields plus text_fields."""
    config = base_config(name).data
    config.update(name=name, path=fields.pop("path", None), batch_size=8, eval_batch_size=8)
    config.update(text.text_fields(seq_len=fields.pop("seq_len", 16)))
    config.update(fields)
    return config


def test_char_vocabulary_round_trip_and_unknown_characters() -> None:
    vocabulary = vocab.build("char", [SAMPLE], 0)
    assert vocabulary.tokens[:3] == ("[PAD]", "[CLS]", "[MASK]")
    assert vocabulary.size == 3 + len(set(SAMPLE))
    ids = vocabulary.encode(SAMPLE)
    assert ids.dtype == np.int32 and ids.min() >= 3
    assert vocabulary.decode(ids) == SAMPLE
    restored = vocab.from_json(json.loads(json.dumps(vocabulary.to_json())))
    assert restored.tokens == vocabulary.tokens
    np.testing.assert_array_equal(vocabulary.encode("fox~"), restored.encode("fox~"))
    assert vocabulary.encode("~")[0] == 0  # unseen in training: the pad/unknown id


def test_wordpiece_vocabulary_round_trip() -> None:
    lines = [SAMPLE, "the dog jumps", "a lazy fox"] * 20
    vocabulary = vocab.build("wordpiece", lines, 120)
    info = vocab.info(vocabulary)
    assert (info["num_special"], info["cls_id"], info["mask_id"]) == (4, 2, 3)
    assert vocabulary.tokenizer.token_to_id("[PAD]") == 0
    ids = vocabulary.encode("The lazy dog jumps")
    assert vocabulary.decode(ids) == "the lazy dog jumps"
    restored = vocab.from_json(json.loads(json.dumps(info["vocabulary"])))
    np.testing.assert_array_equal(
        restored.encode("quick brown zebra"), vocabulary.encode("quick brown zebra")
    )
    assert restored.size == vocabulary.size == info["vocab_size"]


def test_unknown_tokenizer_is_a_user_error() -> None:
    with pytest.raises(UserError, match="data.tokenizer='bpe'"):
        vocab.build("bpe", [SAMPLE], 10)


def test_positional_split_is_90_5_5_in_order() -> None:
    content = "".join(chr(65 + i % 26) for i in range(2000))
    parts = text.positional_split(content)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [1800, 100, 100]
    assert parts["train"] + parts["val"] + parts["test"] == content


@pytest.mark.parametrize("length", [2, 65, 100, 129])
def test_windows_share_one_token_and_their_targets_tile_the_text(length: int) -> None:
    ids = np.arange(1, length + 1, dtype=np.int32)
    rows = text.windows(ids, 64)
    assert rows.shape == (-(-(length - 1) // 64), 65)
    np.testing.assert_array_equal(rows[1:, 0], rows[:-1, -1])  # one shared token
    targets = rows[:, 1:].ravel()
    np.testing.assert_array_equal(targets[targets != 0], ids[1:])  # each target exactly once
    assert np.all(targets[length - 1 :] == 0)  # the rest is padding


def test_text_file_splits_by_position_with_a_train_only_vocabulary(tmp_path) -> None:
    path = tmp_path / "corpus.txt"
    content = "abcdefghij" * 90 + "abxyz" * 18 + "#" * 10  # '#' occurs only in the test 5%
    path.write_text(content, encoding="utf-8")
    dataset = SOURCES.lookup("text_file")(data_config("text_file", path=str(path), seq_len=16))
    vocabulary = vocab.from_json(dataset.info["vocabulary"])
    assert "#" not in vocabulary.tokens and "z" not in vocabulary.tokens
    parts = text.positional_split(content)
    for split in ("train", "val", "test"):
        tokens = dataset.splits[split]["tokens"]
        assert tokens.shape[1] == 17
        decoded = vocabulary.decode(t for t in tokens[:, 1:].ravel() if t)  # unseen: pads
        assert decoded == "".join(c for c in parts[split][1:] if c not in "xyz#")


@pytest.mark.parametrize("tokenizer", ["char", "wordpiece"])
def test_a_text_file_read_in_pieces_and_from_disk_gives_the_windows_of_the_whole_text(
    tmp_path, monkeypatch, tokenizer
) -> None:
    from pydoc_data.topics import topics

    content = "\n\n".join(map(topics.get, sorted(topics)))[:80_000]
    path = tmp_path / "docs.txt"
    path.write_text(content, encoding="utf-8")
    config = data_config("text_file", path=str(path), tokenizer=tokenizer, vocab_size=400)
    whole = text.language_dataset(config, text.positional_split(content))  # encoded at once
    if tokenizer == "wordpiece":  # whose training breaks ties at random: compare encodings
        (tmp_path / "vocab.json").write_text(json.dumps(whole.info["vocabulary"]))
        config.vocab_path = str(tmp_path / "vocab.json")
    monkeypatch.setattr(text, "PIECE", 999)  # pieces cut at newlines, not at the split starts
    for storage in ("memory", "disk"):
        config.storage = storage
        dataset = SOURCES.lookup("text_file")(config)
        assert dataset.info == whole.info
        for split in text.SPLITS:
            tokens = data.in_memory(dataset.splits[split])["tokens"]
            np.testing.assert_array_equal(tokens, whole.splits[split]["tokens"])
    assert isinstance(dataset.splits["train"], data.Records)  # windows cut from a mapped file
    assert isinstance(dataset.splits["train"].read.__closure__[0].cell_contents, np.memmap)


def test_a_resumed_text_run_reads_the_vocabulary_it_was_trained_with(tmp_path) -> None:
    config = ml_collections.ConfigDict({"data": data_config("text_file")})
    assert with_saved_vocabulary(config, tmp_path, overwrite=False) is config  # a new run
    (tmp_path / "vocab.json").write_text("{}")
    resumed = with_saved_vocabulary(config, tmp_path, overwrite=False)
    assert resumed.data.vocab_path == str(tmp_path / "vocab.json")
    assert config.data.vocab_path is None  # the config itself, and so config.json, unchanged
    assert with_saved_vocabulary(config, tmp_path, overwrite=True) is config
    config.data.vocab_path = "given.json"
    assert with_saved_vocabulary(config, tmp_path, overwrite=False) is config
    images = base_config("digits_lenet")
    assert with_saved_vocabulary(images, tmp_path, overwrite=False) is images


def test_python_docs_is_the_offline_default() -> None:
    dataset = SOURCES.lookup("python_docs")(data_config("python_docs", seq_len=128))
    sizes = {s: dataset.size(s) for s in ("train", "val", "test")}
    assert sizes["train"] > 3000  # ~465k characters in Python 3.11
    assert abs(sizes["val"] - sizes["train"] / 18) < 2 and abs(sizes["test"] - sizes["val"]) < 2
    assert 90 < dataset.info["vocab_size"] < 200


def test_missing_or_non_utf8_files_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="--config.data.path=FILE"):
        SOURCES.lookup("text_file")(data_config("text_file"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        SOURCES.lookup("text_file")(data_config("text_file", path=str(latin)))


def test_read_labelled_lines_and_tsv(tmp_path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("1 a fine film\n0 dull , dull\n\n2 so-so\n", encoding="utf-8")
    arrays = text.read_labelled(str(lines))
    assert list(arrays["text"]) == ["a fine film", "dull , dull", "so-so"]
    np.testing.assert_array_equal(arrays["label"], [1, 0, 2])
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\nit works\t1\nit does not\t0\n", encoding="utf-8")
    arrays = text.read_labelled(str(tsv))
    assert list(arrays["text"]) == ["it works", "it does not"]
    np.testing.assert_array_equal(arrays["label"], [1, 0])


@pytest.mark.parametrize(
    "content, line",
    [("1 good\npositive great\n", 2), ("1 good\n0\n", 2), ("sentence\tlabel\nok\n", 2)],
)
def test_read_labelled_names_file_and_line_of_a_bad_line(tmp_path, content, line) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=f"bad.txt, line {line}: expected"):
        text.read_labelled(str(path))


def test_labelled_text_rows_start_with_cls_and_are_padded(tmp_path) -> None:
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{i % 2} {'good ' * (i % 5 + 1)}film\n" for i in range(50)))
    dev = tmp_path / "dev.txt"
    dev.write_text("0 film good\n1 good good film\n")
    config = data_config(
        "labelled_text", path=str(train), val_path=str(dev), seq_len=5, tokenizer="wordpiece"
    )
    dataset = SOURCES.lookup("labelled_text")(config)
    sizes = {s: dataset.size(s) for s in ("train", "val", "test")}
    assert sizes == {"train": 45, "val": 2, "test": 5}  # test carved from train, then val read
    info = dataset.info
    assert info["num_classes"] == 2
    vocabulary = vocab.from_json(info["vocabulary"])
    val = dataset.splits["val"]["tokens"]
    assert val.shape == (2, 5) and np.all(val[:, 0] == info["cls_id"])
    assert [vocabulary.decode(row) for row in val] == ["film good", "good good film"]
    np.testing.assert_array_equal(val[:, 4], [0, 0])  # padded
    np.testing.assert_array_equal(dataset.splits["val"]["label"], [0, 1])
    assert dataset.splits["train"]["tokens"][:, -1].any()  # longer sentences are cut at seq_len


def test_vocab_path_reuses_a_saved_vocabulary(tmp_path) -> None:
    saved = vocab.build("char", ["zyx"], 0)
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(saved.to_json()))
    content = tmp_path / "c.txt"
    content.write_text("xyz" * 100)
    config = data_config("text_file", path=str(content), vocab_path=str(path))
    dataset = SOURCES.lookup("text_file")(config)
    assert dataset.info["vocabulary"] == saved.to_json()


def test_digits_rows_are_the_digits_read_row_by_row() -> None:
    config = data_config("digits_rows")
    rows, images = SOURCES.lookup("digits_rows")(config), embedded.digits(config)
    np.testing.assert_array_equal(
        rows.splits["train"]["image"], images.splits["train"]["image"][..., 0]
    )
    assert rows.info["input_shape"] == (8, 8) and rows.info["num_classes"] == 10


@pytest.fixture(scope="module")
def tfds():
    from research.data.tfds_source import import_tfds

    return import_tfds()


@pytest.mark.parametrize(
    "name, fields, shape",
    [
        ("tiny_shakespeare", {}, (17,)),
        ("glue/sst2", {"tokenizer": "wordpiece", "vocab_size": 200}, (16,)),
        ("imdb_reviews", {"tokenizer": "wordpiece", "vocab_size": 200}, (16,)),
        ("mnist_rows", {}, (28, 28)),
    ],
)
def test_tfds_sources_with_mock_data(tfds, name, fields, shape) -> None:
    with mock_tfds(num_examples=20):
        dataset = SOURCES.lookup(name)(data_config(name, **fields))
    key = "image" if name == "mnist_rows" else "tokens"
    for split in ("train", "val", "test"):
        assert dataset.splits[split][key].shape[1:] == shape
    if name in ("glue/sst2", "imdb_reviews"):
        assert dataset.info["num_classes"] == 2
        assert (dataset.size("train"), dataset.size("val"), dataset.size("test")) == (18, 2, 20)


@pytest.mark.parametrize("content", ["", "hello world, this is short."])
def test_a_too_short_text_file_says_how_many_characters_it_has_and_needs(tmp_path, content):
    path = tmp_path / "short.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=f"has {len(content)} characters.*at least 31"):
        SOURCES.lookup("text_file")(data_config("text_file", path=str(path)))


def test_the_advice_for_a_train_split_shorter_than_a_batch_works(tmp_path) -> None:
    """43 characters: train is 38 tokens, 3 windows of 16, not a batch of 8 (which needs 129)."""
    path = tmp_path / "short.txt"
    path.write_text("hello world, this is a short text, isnt it.", encoding="utf-8")
    config = data_config("text_file", path=str(path))
    with pytest.raises(UserError) as error:
        data.load(config)
    message = str(error.value)
    assert "has 38 tokens" in message and "data.batch_size=8 needs 8 windows, 129" in message
    advice = re.findall(r"--config\.data\.(batch_size|seq_len)=(\d+)", message)
    assert advice == [("batch_size", "3"), ("seq_len", "4")]
    for key, value in advice:
        dataset = data.load(data_config("text_file", path=str(path), **{key: int(value)}))
        for split in ("train", "val", "test"):  # every split has a target to score
            assert dataset.splits[split]["tokens"][:, 1:].any()


def test_a_split_with_nothing_to_score_is_refused(tmp_path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("ab" * 45 + "z" * 10, encoding="utf-8")  # val and test: characters train lacks
    with pytest.raises(UserError, match="The val split of data.name='text_file' has nothing"):
        SOURCES.lookup("text_file")(data_config("text_file", path=str(path)))


@pytest.mark.parametrize("key", ["val_path", "test_path"])
def test_a_label_outside_the_training_classes_names_file_and_line(tmp_path, key) -> None:
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{i % 2} film number {i}\n" for i in range(20)))
    other = tmp_path / "other.txt"
    other.write_text("1 nice\n\n7 what is this\n0 bad\n")
    config = data_config("labelled_text", path=str(train), **{key: str(other)})
    with pytest.raises(UserError, match=r"other\.txt, line 3: label 7 is not a class.* 0, 1\)"):
        SOURCES.lookup("labelled_text")(config)


def test_a_labelled_file_too_short_to_carve_its_splits_is_refused(tmp_path) -> None:
    train = tmp_path / "train.txt"
    train.write_text("1 good film\n0 bad film\n1 great\n")
    with pytest.raises(UserError, match="too short to carve a val and a test split.*train 3"):
        SOURCES.lookup("labelled_text")(data_config("labelled_text", path=str(train)))
