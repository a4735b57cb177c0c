"""The run lifecycle under faults: the workdir lock, a rejected start that changes nothing (even
with --overwrite), damaged files, checkpoint faults, stop signals at every phase, explosions."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, metrics_without_timing, run_module

from research.errors import UserError
from research.train import loop
from research.train.checkpoint import CheckpointError
from research.train.lifecycle import Diverged, Preempted
from research.train.population import Population
from research.train.workdir import claim_workdir

TINY = ("--config=experiments/digits_mlp.py", "--config.train.num_epochs=2",
        "--config.model.hidden_sizes=(16,)", "--config.data.batch_size=64")  # fmt: skip


def snapshot(directory) -> dict:
    """Every file's bytes under `directory`, by relative path."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


@pytest.fixture
def finished(make_config, tmp_path):
    """A finished 2-epoch run: (config, workdir)."""
    config = make_config(**{"model.hidden_sizes": (16,)})
    loop.train_and_evaluate(config, tmp_path / "run")
    return config, tmp_path / "run"


def test_a_held_workdir_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_lock(
    make_config, tmp_path
):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import pathlib, time
            from research.train.workdir import lock
            handle = lock(pathlib.Path({str(tmp_path)!r}))
            print("locked", flush=True)
            time.sleep(120)
        """)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_module("launch.train", *TINY, f"--workdir={tmp_path}", timeout=120)
        assert result.returncode == 2
        assert f"is in use by another run (pid {holder.pid} on " in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "config.json").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with claim_workdir(make_config(), tmp_path, overwrite=False):  # SIGKILL freed it
        assert (tmp_path / "config.json").exists()


def test_a_rejected_start_changes_nothing_even_with_overwrite(finished, tmp_path):
    _, workdir = finished
    before = snapshot(workdir)
    bad = "--config.data.batch_size=5000"  # larger than the training split: refused at load
    result = run_module("launch.train", *TINY, bad, f"--workdir={workdir}", "--overwrite")
    assert result.returncode == 2 and "data.batch_size=5000" in result.stderr, result.stderr
    assert snapshot(workdir) == before
    fresh = tmp_path / "fresh"
    result = run_module("launch.train", *TINY, bad, f"--workdir={fresh}")
    assert result.returncode == 2 and not fresh.exists()  # the corrected command is not refused


def test_damaged_config_json_and_metrics_lines_are_named(finished):
    config, workdir = finished
    rows = (workdir / "metrics.jsonl").read_text().splitlines()
    (workdir / "metrics.jsonl").write_text("\n".join([rows[0], "{not json", *rows[2:]]) + "\n")
    with pytest.raises(UserError, match=r"Line 2 of .*metrics.jsonl' is damaged .* 3 lines after"):
        loop.train_and_evaluate(config, workdir)
    (workdir / "config.json").write_text('{"seed": ')
    with pytest.raises(UserError, match=r"config.json' is damaged"):
        loop.train_and_evaluate(config, workdir)


def _damage(step_dir) -> None:
    """Truncates every array file of a checkpoint step, as a full disk or a bad copy would."""
    for path in (step_dir / "state").rglob("*"):
        if path.is_file() and "d" in path.parent.name:
            path.write_bytes(b"")


def test_a_damaged_newest_checkpoint_falls_back_to_an_older_one(finished, capfd):
    config, workdir = finished
    reference = metrics_without_timing(workdir)
    latest = workdir / "checkpoints" / "latest"
    assert sorted(int(p.name) for p in latest.iterdir()) == [20, 40]
    (workdir / "summary.json").unlink()  # an unfinished run: it must resume from step 20
    _damage(latest / "40")
    summary = loop.train_and_evaluate(config, workdir)
    assert "checkpoint step 40 in" in capfd.readouterr().err
    assert summary["steps"] == 40 and metrics_without_timing(workdir) == reference
    for step in (20, 40):
        _damage(latest / str(step))
    with pytest.raises(
        CheckpointError, match=r"No checkpoint .* can be restored .*Move that folder"
    ):
        loop.train_and_evaluate(config, workdir)


def test_a_failed_save_stops_the_run_with_the_path_and_exits(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import orbax.checkpoint as ocp
        from launch import common

        save, calls = ocp.CheckpointManager.save, []

        def full_disk(self, *args, **kwargs):
            calls.append(1)
            if len(calls) > 2:  # best/20 and latest/20 succeed, best/40 fails
                raise OSError(28, "No space left on device")
            return save(self, *args, **kwargs)

        ocp.CheckpointManager.save = full_disk
        sys.argv = ["train", *{list(TINY)!r}, "--workdir={tmp_path}"]
        from launch import train
        common.run(train.main)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert "Saving a checkpoint in" in result.stderr and "No space left" in result.stderr
    assert "newest intact one is step 20" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_during_start_up_exits_zero_and_writes_nothing(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "launch.train", *TINY, f"--workdir={tmp_path / 'run'}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        import time

        time.sleep(1.0)  # importing JAX alone takes longer
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "outside training; nothing in progress to save; rerun" in stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("phase", ["test", "save"])
def test_a_signal_during_the_test_evaluation_or_a_save_ends_cleanly_and_the_rerun_finishes(
    phase, make_config, tmp_path, monkeypatch
):
    config = make_config(**{"model.hidden_sizes": (16,)})
    reference = loop.train_and_evaluate(config, tmp_path / "reference")
    number = signal.SIGTERM if phase == "test" else signal.SIGINT
    with monkeypatch.context() as patch:
        if phase == "test":
            evaluate = Population.evaluate

            def signalled(self, state, split):
                if split == "test":
                    os.kill(os.getpid(), number)
                return evaluate(self, state, split)

            patch.setattr(Population, "evaluate", signalled)
        else:
            save = loop.Checkpointer.save

            def signalled(self, step, state, meta):
                if step == 20:  # the end of epoch 1
                    os.kill(os.getpid(), number)
                save(self, step, state, meta)

            patch.setattr(loop.Checkpointer, "save", signalled)
        with pytest.raises(Preempted) as stopped:
            loop.train_and_evaluate(config, tmp_path / "run")
    expected = "during the test evaluation" if phase == "test" else "at step 21, saved (SIGINT)"
    assert expected in str(stopped.value) and "rerun to resume" in str(stopped.value)
    assert stopped.value.exit_code == (0 if phase == "test" else 130)
    summary = loop.train_and_evaluate(config, tmp_path / "run")
    assert summary["test"] == reference["test"]
    assert metrics_without_timing(tmp_path / "run") == metrics_without_timing(
        tmp_path / "reference"
    )


def test_an_exploding_loss_stops_as_diverged_before_it_is_nan(make_config, tmp_path):
    config = make_config("digits_lenet", **{"optimizer.learning_rate": 5.0})
    with pytest.raises(Diverged, match=r"over 100x the loss of the first step .*learning_rate"):
        loop.train_and_evaluate(config, tmp_path)
    assert not list((tmp_path / "checkpoints" / "latest").iterdir())


def test_a_non_finite_state_is_never_saved_mid_epoch(make_config, tmp_path):
    config = make_config(**{"optimizer.name": "sgd", "optimizer.learning_rate": 1e38,
                            "train.checkpoint_every_steps": 5})  # fmt: skip
    with pytest.raises(Diverged, match=r"steps 1-5\) is (nan|inf).*no checkpoint was saved"):
        loop.train_and_evaluate(config, tmp_path)
    assert not list((tmp_path / "checkpoints" / "latest").iterdir())
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
