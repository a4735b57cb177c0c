"""Datasets larger than memory: TFDS splits read by index from ArrayRecord files give the same
batches, statistics and training as the same data decoded into memory, read only the rows a step
needs, and a TFRecord dataset read by index names the command that converts it."""

import json

import numpy as np
import pytest
from conftest import metrics_without_timing
from PIL import Image
from sklearn.datasets import load_digits

from research import config as config_lib
from research import data as data_lib
from research.config import base_config
from research.data import text
from research.errors import UserError
from research.train.loop import train_and_evaluate

tfds = pytest.importorskip("tensorflow_datasets")
from launch import prepare_data  # noqa: E402  (after TFDS is known to be there)
from research.data.tfds_source import import_tfds  # noqa: E402

import_tfds()


class TinyDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's digits as a TFDS dataset: PNG-encoded 8x8x1 images, 10 classes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(0, 1400),
            "test": self._generate_examples(1400, 1797),
        }

    def _generate_examples(self, start, stop):
        digits = load_digits()
        images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
        for i in range(start, stop):
            yield i, {"image": images[i], "label": int(digits.target[i])}


class TinyPhotos(tfds.core.GeneratorBasedBuilder):
    """RGB images of different sizes, as ImageNet's are."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(num_classes=2),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "test": self._generate_examples(40, 50)}

    def _generate_examples(self, start, stop):
        rng = np.random.default_rng(0)
        for i in range(start, stop):
            shape = (int(rng.integers(20, 40)), int(rng.integers(20, 40)), 3)
            yield i, {"image": rng.integers(0, 256, shape, np.uint8), "label": i % 2}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """tiny_digits and tiny_photos prepared as ArrayRecord, tiny_digits also as TFRecord."""
    root = tmp_path_factory.mktemp("tfds")
    for builder_class in (TinyDigits, TinyPhotos):
        builder_class(data_dir=str(root / "array_record")).download_and_prepare(
            file_format="array_record"
        )
    TinyDigits(data_dir=str(root / "tfrecord")).download_and_prepare()
    return root


def data_config(name, data_dir, **fields):
    config = base_config(name).data
    config.update(name=name, tfds_data_dir=str(data_dir), **{"batch_size": 32, **fields})
    return config


def test_read_by_index_equals_decoded_in_memory(tfds_dir):
    memory = data_lib.load(data_config("tiny_digits", tfds_dir / "array_record", storage="memory"))
    disk = data_lib.load(data_config("tiny_digits", tfds_dir / "array_record", storage="disk"))
    assert all(isinstance(split, data_lib.Records) for split in disk.splits.values())
    assert all(isinstance(split, dict) for split in memory.splits.values())
    assert {s: disk.size(s) for s in disk.splits} == {"train": 1260, "val": 140, "test": 397}
    assert disk.info == memory.info
    for epoch, step in ((0, 0), (0, 38), (3, 5)):
        for process in ((0, 1), (1, 2)):
            batches = [data_lib.train_batch(d, 7, epoch, step, 32, process) for d in (memory, disk)]
            for key in ("image", "label"):
                np.testing.assert_array_equal(batches[0][key], batches[1][key])
    rows = [text.as_rows(d) for d in (memory, disk)]  # a transform of every split, lazily on disk
    np.testing.assert_array_equal(*(data_lib.train_batch(d, 0, 1, 2, 32)["image"] for d in rows))
    for split in ("val", "test"):
        for a, b in zip(
            *(data_lib.eval_batches(d, split, 64) for d in (memory, disk)), strict=True
        ):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_training_read_from_disk_with_prefetch_equals_training_in_memory(
    make_config, tmp_path, tfds_dir
):
    runs = []
    for storage, prefetch in (("memory", 0), ("disk", 3)):
        overrides = {
            "data.name": "tiny_digits",
            "data.tfds_data_dir": str(tfds_dir / "array_record"),
            "data.storage": storage,
            "data.prefetch": prefetch,
        }
        summary = train_and_evaluate(make_config(**overrides), tmp_path / storage)
        runs.append((metrics_without_timing(tmp_path / storage), summary["test"]))
    assert runs[0] == runs[1] and len(runs[0][0]) == 5  # bit for bit: train, val x 2 epochs; test


def test_a_step_reads_only_its_own_rows_and_statistics_a_fixed_sample(monkeypatch):
    reads = []

    def read(rows):
        reads.extend(rows)
        return [{"image": np.full((2, 2, 1), i % 256, np.uint8)} for i in rows]

    records = data_lib.Records(read, np.arange(50_000))
    dataset = data_lib.Dataset({"train": records}, {})
    data_lib.train_batch(dataset, 0, 0, 3, 64, (1, 4))
    assert len(reads) == 16 and len(set(reads)) == 16  # a quarter of the global batch of 64
    reads.clear()
    info = data_lib.image_info(records, 2)
    assert len(reads) == data_lib.STATS_SAMPLE == len(set(reads))
    assert abs(info["mean"][0] - 127.5) < 2  # the sample's mean of 0..255 in equal shares
    # The same sample in memory: normalisation does not depend on where the split lies.
    assert data_lib.image_info(data_lib.in_memory(records), 2) == info


def test_variable_size_images_are_squared_when_read_by_index(tfds_dir):
    config = data_config("tiny_photos", tfds_dir / "array_record", storage="disk", batch_size=8)
    config.image_size = 16
    dataset = data_lib.load(config)
    batch = data_lib.train_batch(dataset, 0, 0, 0, 8)
    assert batch["image"].shape == (8, 16, 16, 3) and batch["image"].dtype == np.uint8
    assert dataset.info["input_shape"] == (16, 16, 3)
    # The same squares from TFDS's own decoding: shorter side to 16, then the center crop.
    decoded = TinyPhotos(data_dir=str(tfds_dir / "array_record")).as_data_source("train")
    rows = dataset.splits["train"].rows[data_lib.epoch_order(0, 0, dataset.size("train"))[:8]]
    for image, row in zip(batch["image"], rows, strict=True):
        original = Image.fromarray(decoded[int(row)]["image"])
        scale = 16 / min(original.size)
        width, height = (max(16, round(side * scale)) for side in original.size)
        top, left = (height - 16) // 2, (width - 16) // 2
        resized = original.resize((width, height), Image.BILINEAR)
        np.testing.assert_array_equal(image, resized.crop((left, top, left + 16, top + 16)))


def test_a_tfrecord_dataset_read_by_index_names_the_convert_command_which_then_works(tfds_dir):
    config = data_config("tiny_digits", tfds_dir / "tfrecord", storage="disk")
    with pytest.raises(
        UserError,
        match=r"prepared as TFRecord.*launch.prepare_data tiny_digits --convert --data_dir=",
    ):
        data_lib.load(config)
    memory = data_lib.load(data_config("tiny_digits", tfds_dir / "tfrecord", storage="memory"))
    prepare_data.convert("tiny_digits", str(tfds_dir / "tfrecord"))
    disk = data_lib.load(config)
    assert isinstance(disk.splits["train"], data_lib.Records)
    batches = [data_lib.train_batch(d, 0, 1, 2, 32) for d in (memory, disk)]
    np.testing.assert_array_equal(batches[0]["image"], batches[1]["image"])


def test_prefetcher_reads_each_step_once_ahead_of_use_and_reraises_errors():
    reads = []

    def read(index):
        reads.append(index)
        if index == 5:
            raise UserError("damaged record 5")
        return index * 10

    prefetch = data_lib.Prefetcher(read, depth=2, limit=6)
    assert [prefetch(i) for i in (0, 0, 1, 2, 3, 3, 4)] == [0, 0, 10, 20, 30, 30, 40]
    with pytest.raises(UserError, match="damaged record 5"):
        prefetch(5)
    assert sorted(reads) == list(range(6))  # each once, also the one asked for twice
    prefetch.close()


def test_storage_and_prefetch_may_change_on_resume_but_nothing_else(tfds_dir):
    saved = json.loads(config_lib.to_json(base_config("x")))
    changed = base_config("x")
    changed.data.storage, changed.data.prefetch = "disk", 0
    assert config_lib.differences(saved, changed) == {}
    changed.data.batch_size = 7
    assert list(config_lib.differences(saved, changed)) == ["data.batch_size"]


def test_unprepared_or_unbatchable_tfds_data_says_what_to_do(tfds_dir, tmp_path):
    with pytest.raises(UserError, match="'tiny_digits' is not prepared.*launch.prepare_data"):
        data_lib.load(data_config("tiny_digits", tmp_path, storage="disk"))
    with pytest.raises(UserError, match="differ in size.*--config.data.image_size=N"):
        data_lib.load(data_config("tiny_photos", tfds_dir / "array_record", batch_size=8))
