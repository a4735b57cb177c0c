"""Try the multi-host path on one machine: N `launch.train` processes joined on 127.0.0.1.

`python -m launch.local_cluster --num_processes=2 --devices_per_process=2 -- --config=... ...`
gives each process its own simulated CPU devices, forwards SIGTERM/SIGINT to all of them, waits,
and exits with the worst exit status. It never listens on anything but the loopback address.
"""

import os
import signal
import subprocess
import sys
import time

from absl import app, flags

from research.train import distributed

flags.DEFINE_integer("num_processes", 2, "Number of launch.train processes.")
flags.DEFINE_integer("devices_per_process", 1, "Simulated CPU devices per process.")
flags.DEFINE_integer("port", 0, "Coordinator port on 127.0.0.1 (0: a free one).")
flags.DEFINE_integer(
    "grace_s",
    150,
    "Once a process has failed, seconds to let the others abort on their own (JAX's heartbeat "
    "does that) before they are killed.",
)
FLAGS = flags.FLAGS


def process_env(devices: int) -> dict[str, str]:
    """CPU only, with `devices` simulated devices; other XLA flags are kept."""
    xla_flags = os.environ.get("XLA_FLAGS", "")
    xla_flags = f"{xla_flags} --xla_force_host_platform_device_count={devices}".strip()
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags}


def exit_status(returncode: int) -> int:
    """A shell's view of a status: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def start(train_args: list[str], num_processes: int, devices: int, port: int):
    command = [sys.executable, "-m", "launch.train", *train_args]
    coordinates = [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}"]
    return [
        subprocess.Popen([*command, *coordinates, f"--process_id={i}"], env=process_env(devices))
        for i in range(num_processes)
    ]


def wait_all(processes: list[subprocess.Popen], grace_s: float) -> int:
    """Waits for every process; after the first failure the rest get `grace_s` to exit."""
    deadline = None
    while any(p.poll() is None for p in processes):
        if deadline is None and any(p.poll() for p in processes):
            deadline = time.time() + grace_s
        if deadline is not None and time.time() > deadline:
            for p in processes:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    return max(exit_status(p.returncode) for p in processes)


def main(argv: list[str]) -> None:
    port = FLAGS.port or distributed.free_loopback_port()
    processes = start(argv[1:], FLAGS.num_processes, FLAGS.devices_per_process, port)

    def forward(signum, _frame):
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    sys.exit(wait_all(processes, FLAGS.grace_s))


if __name__ == "__main__":
    app.run(main)
