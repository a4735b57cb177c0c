"""Prepare a TFDS dataset from official raw files already on disk, with no network.

`python -m launch.prepare_data mnist --from=../shared/data/mnist [--data_dir=DIR]`: TFDS finds
each registered file by name in the folder and checks its registered checksum before use. The
dataset is written as ArrayRecord, which training reads by index (data.storage="disk");
`python -m launch.prepare_data NAME --convert [--data_dir=DIR]` adds ArrayRecord files to a
dataset prepared earlier as TFRecord.
"""

import importlib.util
import pathlib
import socket
import sys
import types

from absl import flags

from launch import common
from research.errors import UserError

flags.DEFINE_string("from", None, "Folder holding the dataset's official raw files.")
flags.DEFINE_string("data_dir", None, "TFDS data directory to prepare into (default: TFDS's).")
flags.DEFINE_bool("convert", False, "Add ArrayRecord files to a dataset prepared as TFRecord.")
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
    connect = socket.socket.connect
    socket.socket.connect = _no_network  # A missing file must fail here, never download.
    try:
        dataset_builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(source)),
            file_format="array_record",
        )
    except Exception as error:
        raise UserError(
            f"Could not prepare {name!r} from {str(source)!r}: {type(error).__name__}: "
            f"{str(error)[:300]}. The folder must hold the official raw files under the names "
            "TFDS registers for this dataset (see its url_checksums), with matching checksums."
        ) from None
    finally:
        socket.socket.connect = connect  # only this call is offline, not its caller
    return dataset_builder.data_dir


def convert(name: str, data_dir: str | None) -> str:
    """Writes ArrayRecord files beside the TFRecord ones of prepared TFDS `name`, so it can be
    read by index; returns the dataset's directory."""
    from research.data.tfds_source import builder

    if importlib.util.find_spec("apache_beam") is None:
        # TFDS's converter subclasses beam.DoFn at import, but its local path (use_beam=False)
        # never uses Beam: a stand-in spares installing Apache Beam for a file conversion.
        sys.modules["apache_beam"] = types.SimpleNamespace(DoFn=object)
    from tensorflow_datasets.scripts.cli import convert_format_utils

    dataset_builder = builder(name, data_dir)
    if not dataset_builder.is_prepared():
        raise UserError(
            f"TFDS dataset {name!r} is not prepared in {dataset_builder.data_dir!r}, so there is "
            f"nothing to convert. Prepare it with `python -m launch.prepare_data {name} "
            "--from=DIR`, which writes ArrayRecord directly."
        )
    formats = {str(f.value) for f in dataset_builder.info.available_file_formats()}
    if "array_record" not in formats:
        convert_format_utils.convert_dataset(
            out_dir=None,
            out_file_format="array_record",
            dataset_version_dir=dataset_builder.data_dir,
            num_workers=1,
        )
    return dataset_builder.data_dir


def main(argv: list[str], overrides: dict[str, str]) -> None:
    source = FLAGS["from"].value
    if len(argv) != 2 or overrides or (source is None) == (not FLAGS.convert):
        common.fail(
            "usage: python -m launch.prepare_data NAME --from=DIR [--data_dir=DIR], or "
            "python -m launch.prepare_data NAME --convert [--data_dir=DIR]"
        )
    if FLAGS.convert:
        print(f"{argv[1]} in {convert(argv[1], FLAGS.data_dir)} can be read by index")
    else:
        print(f"prepared {argv[1]} in {prepare(argv[1], pathlib.Path(source), FLAGS.data_dir)}")


if __name__ == "__main__":
    common.run(main)
