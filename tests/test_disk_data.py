"""Datasets larger than memory: TFDS splits read by index from ArrayRecord files give the same
batches, statistics and training as the same data decoded into memory, read only the rows a step
needs, and a TFRecord dataset read by index names the command that converts it."""

import json
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, metrics_without_timing, run_module
from PIL import Image

from research import config as config_lib
from research import data as data_lib
from research.config import base_config
from research.data import text
from research.errors import UserError
from research.train.loop import train_and_evaluate

tfds = pytest.importorskip("tensorflow_datasets")
from tiny_tfds import TinyPhotos  # noqa: E402  (after TFDS is known to be there)

from launch import prepare_data  # noqa: E402
from research.data import imagenet_stand_in  # noqa: E402


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
        for process in ((0, 1), (0, 2), (1, 2)):
            batches = [data_lib.train_batch(d, 7, epoch, step, 32, process) for d in (memory, disk)]
            for key in ("image", "label"):
                np.testing.assert_array_equal(batches[0][key], batches[1][key])
        # Two processes read disjoint halves whose union, in order, is the global batch.
        halves = [data_lib.train_batch(disk, 7, epoch, step, 32, (i, 2)) for i in (0, 1)]
        whole = data_lib.train_batch(disk, 7, epoch, step, 32)
        assert len(halves[0]["label"]) == len(halves[1]["label"]) == 16
        np.testing.assert_array_equal(np.concatenate([h["image"] for h in halves]), whole["image"])
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


def test_imagenet_stand_in_is_prepared_and_trains_through_the_experiment(tmp_path):
    """The ImageNet path end to end: official-format archives (2,000 JPEGs of varied sizes over
    1,000 classes, 500 validation JPEGs) -> launch.prepare_data -> imagenet_resnet50.py, shrunk
    through its :ARG, read by index with the resize and crop, validation-as-test."""
    imagenet_stand_in.write(tmp_path / "raw", per_class=2, val_images=500, sides=(40, 120))
    connect = socket.socket.connect
    prepare_data.prepare("imagenet2012", tmp_path / "raw", str(tmp_path / "tfds"))
    assert socket.socket.connect is connect  # the network is blocked for the prepare only
    config = config_lib.load(
        str(ROOT / "experiments" / "imagenet_resnet50.py") + ":image_size=32,depth=18"
    )
    overrides = {
        "data.tfds_data_dir": str(tmp_path / "tfds"),
        "data.batch_size": 180,
        "data.eval_batch_size": 260,
        "train.num_epochs": 1,
        "optimizer.warmup_epochs": 0.0,
        "model.width": 8,
        "data.storage": "disk",  # what "auto" picks for the real 190 GB
    }
    config.unlock()
    config_lib.apply_overrides(config, overrides)
    config.lock()
    dataset = data_lib.load(config.data)
    assert isinstance(dataset.splits["train"], data_lib.Records)
    assert {s: dataset.size(s) for s in dataset.splits} == {"train": 1980, "val": 20, "test": 500}
    assert dataset.info["input_shape"] == (32, 32, 3) and dataset.info["num_classes"] == 1000
    summary = train_and_evaluate(config, tmp_path / "run")
    rows = metrics_without_timing(tmp_path / "run")
    assert [r["split"] for r in rows] == ["train", "val", "test"]
    assert rows[0]["step"] == 11 and np.isfinite(rows[0]["loss"])  # 1980 // 180 steps
    # One epoch over 1,000 classes: about chance, ln(1000) = 6.9, on the 500 validation JPEGs.
    assert (
        abs(summary["test"]["loss"] - np.log(1000)) < 1
        and rows[2]["loss"] == summary["test"]["loss"]
    )


GENERATED = """
import sys

import numpy as np

from research import config as config_lib
from research import data as data_lib
from research.train.loop import Preempted, train_and_evaluate


def read(rows):
    image = lambda r: np.full((64, 64, 3), r % 251, np.uint8)
    return [{"image": image(r), "label": np.int32(r % 10)} for r in rows]


@data_lib.SOURCES.register("generated", reads=("validation_fraction",))
def generated(config):
    train = data_lib.Records(read, np.arange(int(sys.argv[1])))
    train, val = data_lib.carve_validation(train, 0.001)
    test = data_lib.Records(read, np.arange(256))
    info = data_lib.image_info(train, 10)
    return data_lib.Dataset({"train": train, "val": val, "test": test}, info)


config = config_lib.load("experiments/digits_mlp.py")
config.unlock()
config_lib.apply_overrides(config, {
    "data.name": "generated", "data.batch_size": 64, "model.hidden_sizes": (8,),
    "train.num_epochs": 1, "train.checkpoint_every_steps": 5,
})
config.lock()
try:
    train_and_evaluate(config, sys.argv[2])
except Preempted:
    pass
# This program's own peak (ru_maxrss would include the forking test process's).
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
"""


def peak_rss_of_a_preempted_run(rows: int, workdir) -> int:
    """Peak RSS in bytes of a run over `rows` generated 64x64x3 images, stopped by SIGTERM once
    it has trained and saved 10 steps."""
    process = subprocess.Popen(
        [sys.executable, "-c", GENERATED, str(rows), str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        saved = workdir.glob("checkpoints/latest/*")
        if any(p.name.isdigit() and int(p.name) >= 10 for p in saved):
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.1)
    try:
        stdout, stderr = process.communicate(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"no 10 steps in 240 s: {process.communicate(timeout=30)}") from None
    assert process.returncode == 0, stderr[-3000:]
    return int(stdout.split()[-1]) * 1024


def test_host_memory_does_not_grow_with_the_dataset(tmp_path):
    """2.4 GB of training images (200,000 rows read by index) train with the same peak RSS as
    24 MB (2,000 rows), within 64 MB, and under a quarter of the data's size (here 514 MB and
    511 MB): no pass over the split copies it."""
    small = peak_rss_of_a_preempted_run(2_000, tmp_path / "small")
    large = peak_rss_of_a_preempted_run(200_000, tmp_path / "large")
    data_bytes = 200_000 * 64 * 64 * 3
    assert large < small + (64 << 20) and large < data_bytes / 4, (small, large)


def test_fake_imagenet_refuses_bad_flags_before_writing(tmp_path):
    for flag in ("--sides=a,b", "--sides=90,30", "--per_class=0", "--val_images=50001"):
        result = run_module("launch.fake_imagenet", f"--out={tmp_path / 'raw'}", flag, timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert flag.split("=")[0] in result.stderr and not (tmp_path / "raw").exists()
