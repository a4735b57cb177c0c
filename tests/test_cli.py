"""The entry points' contract: bad input exits 2 with one paragraph naming it, never a traceback."""

import pytest
from conftest import run_module

pytestmark = pytest.mark.slow

SMALL = ("--config=experiments/digits_mlp.py", "--config.train.num_epochs=1")


def assert_clean_failure(result, *phrases):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr[-2000:])


@pytest.mark.parametrize(
    "args, phrases",
    [
        (("--config.optimizer.learnig_rate=0.1",), ("optimizer.learnig_rate", "Did you mean")),
        (("--config.optimizer.learning_rate=fast",), ("optimizer.learning_rate", "float")),
        (("--config.data.batch_size=5000",), ("data.batch_size=5000", "1294")),
        (("--config=experiments/nope.py",), ("experiments/nope.py", "does not exist")),
        (("--config.model.name=transformerz",), ("model.name='transformerz'", "one of: bert_mlm")),
    ],
)
def test_bad_config_exits_2_naming_the_problem(tmp_path, args, phrases):
    assert_clean_failure(
        run_module("launch.train", *SMALL, *args, f"--workdir={tmp_path}"), *phrases
    )


def test_unprepared_tfds_dataset_names_the_prepare_command(tmp_path):
    result = run_module(
        "launch.train",
        "--config=experiments/mnist_lenet.py",
        f"--config.data.tfds_data_dir={tmp_path / 'empty'}",
        f"--workdir={tmp_path / 'run'}",
    )
    assert_clean_failure(result, "'mnist' is not prepared", "launch.prepare_data mnist --from=DIR")


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_module("launch.train", *SMALL, f"--workdir={blocker / 'run'}")
    assert_clean_failure(result, "cannot be written", "--workdir")


def test_existing_run_is_untouched_by_a_mismatched_or_bad_rerun(tmp_path):
    assert run_module("launch.train", *SMALL, f"--workdir={tmp_path}").returncode == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    mismatched = run_module("launch.train", *SMALL, "--config.seed=3", f"--workdir={tmp_path}")
    assert_clean_failure(mismatched, "seed: 0 in the workdir, 3 now", "--overwrite")
    bad = run_module("launch.train", *SMALL, "--config.seed=x", f"--workdir={tmp_path}")
    assert_clean_failure(bad, "seed")
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def test_prepare_data_from_a_folder_without_the_files_fails_without_network(tmp_path):
    result = run_module(
        "launch.prepare_data", "mnist", f"--from={tmp_path}", f"--data_dir={tmp_path / 'tfds'}"
    )
    assert_clean_failure(
        result, "lacks the official files of 'mnist'", "train-images-idx3-ubyte.gz"
    )
