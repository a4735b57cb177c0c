"""launch.bench_data --jpeg: our JPEG pipeline, tf.data's and (where installed) Grain's read the
same rows of the ImageNet stand-in into batches of one shape and the same labels, with pixels
a few levels apart (PIL's and TensorFlow's antialiased bilinear resizes differ slightly), and
report the timing fields."""

import importlib.util
import json

import pytest
from conftest import ROOT, run_module

pytest.importorskip("tensorflow_datasets")
from launch import prepare_data  # noqa: E402
from research.data import imagenet_stand_in  # noqa: E402

TIMINGS = {"ms_per_batch", "images_per_s", "images_per_s_per_core", "images_per_cpu_s"}


def test_jpeg_pipelines_give_the_same_batches_and_their_timings(tmp_path):
    imagenet_stand_in.write(tmp_path / "raw", per_class=1, val_images=1, sides=(40, 90))
    prepare_data.prepare("imagenet2012", tmp_path / "raw", str(tmp_path / "tfds"))
    pipelines = ["ours", "tf.data"] + (["grain"] if importlib.util.find_spec("grain") else [])
    result = run_module(
        "launch.bench_data",
        f"--config={ROOT / 'experiments' / 'imagenet_resnet50.py'}:image_size=32",
        f"--config.data.tfds_data_dir={tmp_path / 'tfds'}",
        "--config.data.batch_size=8",
        "--jpeg",
        "--batches=2",
        "--repeats=2",
        f"--pipelines={','.join(pipelines)}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["setup"]["rows_cycled"] == 40  # (3 warm-up + 2 timed batches) x 8
    for name in pipelines:
        batch = report["batches"][name]
        assert batch["shapes"] == {"image": [8, 32, 32, 3], "label": [8]}
        assert batch["dtypes"] == {"image": "uint8", "label": "int32"}
        assert batch["labels_equal_ours"]  # the same rows in the same order
        assert set(report["medians"][name]) == TIMINGS and len(report["rounds"][name]) == 2
        assert all(value > 0 for value in report["medians"][name].values())
    # Grain runs our own PIL function: the same pixels. tf.data resizes with TensorFlow.
    assert report["batches"]["ours"]["max_abs_diff_vs_ours"] == 0
    if "grain" in pipelines:
        assert report["batches"]["grain"]["max_abs_diff_vs_ours"] == 0
    assert report["batches"]["tf.data"]["mean_abs_diff_vs_ours"] < 2.0
    assert set(report["images_per_s_over_ours"]) == set(pipelines) - {"ours"}
