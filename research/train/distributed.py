"""Joining a multi-host run: cluster detection and `jax.distributed.initialize`, before any JAX
backend starts. Flags are parsed in launch/; this module only acts on the values it is given.
"""

import os
import socket

import jax

from research.errors import UserError

DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"


def detected_cluster() -> str | None:
    """Returns "slurm" inside a multi-task SLURM step, "tpu" on a Cloud TPU VM, else None.

    A single-task SLURM job (an interactive `salloc` shell) is one process and needs no
    coordinator; `jax.distributed.initialize` reads the rest of the SLURM variables itself.
    """
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")
    if all(name in os.environ for name in slurm) and int(os.environ["SLURM_NTASKS"]) > 1:
        return "slurm"
    from jax._src import cloud_tpu_init  # Set by JAX's import when libtpu finds a TPU VM.

    if cloud_tpu_init.running_in_cloud_tpu_vm:
        return "tpu"
    return None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 600,
    heartbeat_timeout_s: int = 100,
) -> str | None:
    """Calls `jax.distributed.initialize` when a cluster is detected or coordinates are given.

    Returns how the run was joined ("flags", "slurm", "tpu") or None for a single process. With
    the coordination service up, a process that dies makes the others abort after at most
    `heartbeat_timeout_s` instead of hanging in a collective; CPU collectives use gloo.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if any(value is not None for value in explicit) and None in explicit:
        raise UserError(
            "--coordinator_address, --num_processes and --process_id go together; pass all three "
            "(or none, to rely on SLURM or TPU VM detection)."
        )
    how = "flags" if coordinator_address is not None else detected_cluster()
    if how is None:
        return None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
    )
    # Orbax's barriers then wait in the coordination service (minutes) rather than in a gloo
    # collective, which gives up when one process arrives 30 s after another.
    import orbax.checkpoint  # noqa: F401  (defines the flag)
    from absl import flags

    flags.FLAGS.experimental_orbax_use_distributed_barrier = True
    return how


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that is free now, for a coordinator on this machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request_deterministic_gpu() -> None:
    """Makes XLA's GPU reductions and scatters deterministic (slower); before JAX's backend starts.

    XLA reads XLA_FLAGS when the first backend is created, so setting it here is enough.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_GPU_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_GPU_FLAG}".strip()
