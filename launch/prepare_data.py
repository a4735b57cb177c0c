"""Prepare a TFDS dataset from official raw files already on disk, with no network.

`python -m launch.prepare_data mnist --from=../shared/data/mnist [--data_dir=DIR]`: TFDS finds
each registered file by name in the folder and checks its registered checksum before use.
"""

import pathlib
import socket

from absl import flags

from launch import common
from research.errors import UserError

flags.DEFINE_string("from", None, "Folder holding the dataset's official raw files.")
flags.DEFINE_string("data_dir", None, "TFDS data directory to prepare into (default: TFDS's).")
FLAGS = flags.FLAGS


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled by launch.prepare_data")


def prepare(name: str, source: pathlib.Path, data_dir: str | None) -> str:
    """Builds TFDS `name` from `source`; returns the prepared directory."""
    from research.data.tfds_source import builder, import_tfds

    tfds = import_tfds()
    if not source.is_dir():
        raise UserError(
            f"--from={str(source)!r} is not a folder. Pass the folder that holds the official "
            f"raw files of {name!r} (for MNIST the four *-ubyte.gz files)."
        )
    dataset_builder = builder(name, data_dir)
    registered = sorted(
        info.filename or url.rsplit("/", 1)[-1]
        for url, info in (dataset_builder.url_infos or {}).items()
    )
    missing = [filename for filename in registered if not (source / filename).is_file()]
    if missing:
        raise UserError(
            f"{str(source)!r} lacks the official files of {name!r} that TFDS registers: "
            f"{', '.join(missing)}. Copy them there under exactly these names (TFDS checks "
            f"their checksums), then rerun."
        )
    socket.socket.connect = _no_network  # A missing file must fail here, never download.
    try:
        dataset_builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(source))
        )
    except Exception as error:
        raise UserError(
            f"Could not prepare {name!r} from {str(source)!r}: {type(error).__name__}: "
            f"{str(error)[:300]}. The folder must hold the official raw files under the names "
            "TFDS registers for this dataset (see its url_checksums), with matching checksums."
        ) from None
    return dataset_builder.data_dir


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) != 2 or overrides or FLAGS["from"].value is None:
        common.fail("usage: python -m launch.prepare_data NAME --from=DIR [--data_dir=DIR]")
    prepared = prepare(argv[1], pathlib.Path(FLAGS["from"].value), FLAGS.data_dir)
    print(f"prepared {argv[1]} in {prepared}")


if __name__ == "__main__":
    common.run(main)
