"""Checkpoints restore onto a different device count: 8 devices -> 1 -> 8 across preemptions.

Orbax restores every array with the shardings of the new run's state, so a run preempted on one
topology finishes on another like an uninterrupted run, to float rounding (bitwise only when
the topology does not change).
"""

import pytest
from multidevice import (  # noqa: F401
    assert_close_runs,
    finish,
    leftovers_killed,
    one_device_run,
    preempt_after_epoch,
    start_train,
)

pytestmark = pytest.mark.slow


def test_preempted_on_8_devices_resumed_on_1_then_on_8_finishes_like_uninterrupted(
    tmp_path, request
):
    preempt_after_epoch(start_train(tmp_path, 8), tmp_path, 1)
    preempt_after_epoch(start_train(tmp_path, 1), tmp_path, 2)
    assert "best val" in finish(start_train(tmp_path, 8))
    assert_close_runs(tmp_path, request.getfixturevalue("one_device_run"))
