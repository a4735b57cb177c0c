"""Metric writers: a W&B run written offline beside an unchanged run record, the hyperparameters
and learning curves in it; a clear message when W&B is asked for but not installed; the epoch
line's best-so-far and ETA."""

import importlib.util
import json
import re

import pytest
from conftest import metrics_without_timing

from research.errors import UserError
from research.train.loop import train_and_evaluate
from research.validation import validate

wandb = pytest.importorskip("wandb")


def test_an_offline_wandb_run_holds_the_config_and_curves_and_the_record_is_unchanged(
    make_config, tmp_path, capsys
):
    plain = make_config(**{"train.num_epochs": 2})
    logged = make_config(**{"train.num_epochs": 2, "log.wandb_project": "research-tests"})
    train_and_evaluate(plain, tmp_path / "plain")
    summary = train_and_evaluate(logged, tmp_path / "logged")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 2/2")]
    best = r"best val accuracy 0\.\d{4} \(epoch [12]\)  [\d,]+ examples/s  ETA 0:00:00$"
    assert len(lines) == 2 and all(re.search(best, line) for line in lines), lines
    assert metrics_without_timing(tmp_path / "plain") == metrics_without_timing(tmp_path / "logged")
    assert sorted(p.name for p in (tmp_path / "logged").iterdir()) == sorted(
        [*(p.name for p in (tmp_path / "plain").iterdir()), "wandb"]
    )
    runs = list((tmp_path / "logged" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    records = wandb_records(runs[0])
    config = {u.key: json.loads(u.value_json) for r in records for u in r.config.update}
    assert config["optimizer.learning_rate"] == logged.optimizer.learning_rate
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = r.history.item
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
            history.setdefault(r.history.step.num, {}).update(row)
    rows = metrics_without_timing(tmp_path / "logged")
    for row in rows[:-1]:  # the epochs' train and val rows at their steps
        assert history[row["step"]][f"{row['split']}/loss"] == pytest.approx(row["loss"])
    assert history[max(history)]["test/accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert history[max(history)]["learning_curves/_type"] == "image-file"


def wandb_records(path):
    """The protobuf records of an offline W&B run file: a 7-byte header, then LevelDB-log
    chunks (4-byte checksum, 2-byte length, 1-byte type) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, offset = [], b"", 7
    while offset + 7 <= len(data):
        if 32768 - offset % 32768 < 7:  # a block's tail too short for a header is padding
            offset += 32768 - offset % 32768
            continue
        length, kind = int.from_bytes(data[offset + 4 : offset + 6], "little"), data[offset + 6]
        pending += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a whole record, or a record's last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_asked_for_without_the_package_is_refused_before_anything_runs(
    make_config, monkeypatch
):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(UserError, match=r'log.wandb_project.*pip install -e "\.\[wandb\]"'):
        validate(make_config(**{"log.wandb_project": "p"}))


def test_each_point_of_a_vmapped_group_gets_its_own_wandb_run(make_config, tmp_path):
    from research.train.loop import train_points

    rates = (1e-3, 3e-3)
    configs = [
        make_config(
            **{"train.num_epochs": 1, "optimizer.learning_rate": r, "log.wandb_project": "t"}
        )
        for r in rates
    ]
    workdirs = [tmp_path / str(i) for i in range(2)]
    train_points(configs, workdirs, tmp_path / "group", stacked=True)
    for workdir, rate in zip(workdirs, rates, strict=True):
        (run,) = workdir.glob("wandb/offline-run-*/run-*.wandb")
        records = wandb_records(run)
        config = {u.key: json.loads(u.value_json) for r in records for u in r.config.update}
        assert config["optimizer.learning_rate"] == rate
        assert records[-1].WhichOneof("record_type") == "exit"  # finished, not cut off
