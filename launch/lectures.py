"""Run the lecture studies: `python -m launch.lectures --workdir=DIR [--only=NAME] [--quick]`.

Each study (experiments/lecture_NAME.py) writes its figures and verdict.md into DIR/NAME/;
this command then writes DIR/lectures.md with every figure embedded and every verdict.
"""

import pathlib
import time

from absl import flags

from launch import common
from research import config as config_lib

flags.DEFINE_string("workdir", "runs/lectures", "Output directory; one folder per study.")
flags.DEFINE_string("only", None, "Run one study, e.g. softmax_temperature.")
flags.DEFINE_bool("quick", False, "Tiny variants (lecture_NAME.py:quick=true) that run in seconds.")
FLAGS = flags.FLAGS


def studies() -> list[str]:
    return sorted(
        p.stem.removeprefix("lecture_") for p in pathlib.Path("experiments").glob("lecture_*.py")
    )


def run_study(name: str, quick: bool, overrides: dict[str, str], workdir: pathlib.Path) -> dict:
    path = f"experiments/lecture_{name}.py"
    config = config_lib.load(path + (":quick=true" if quick else ""))
    config.unlock()
    config_lib.apply_overrides(config, overrides)
    config.lock()
    workdir.mkdir(parents=True, exist_ok=True)
    return config_lib.load_module(path).run(config, workdir)


def write_index(workdir: pathlib.Path, results: dict[str, dict]) -> pathlib.Path:
    """lectures.md: each study's claim, numbers, verdict and figures, in one page."""
    total = sum(r["seconds"] for r in results.values())
    lines = ["# The lectures' claims, rerun", "", f"Wall time: {total:.0f} s in all.", ""]
    lines += [
        f"- {r['title']}: **{'held' if r['held'] else 'did not hold'}** ({r['seconds']:.0f} s)"
        for r in results.values()
    ]
    for name, result in results.items():
        lines += ["", f"## {result['title']}", "", f"**Claim.** {result['claim']}", ""]
        lines += [f"- {line}" for line in result["measured"]]
        lines += [
            "",
            f"**Verdict: {'held' if result['held'] else 'did not hold'}.** {result['note']}",
        ]
        lines += [f"![{figure}]({name}/{figure})" for figure in result["figures"]]
    path = workdir / "lectures.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    names = studies()
    if FLAGS.only and FLAGS.only not in names:
        common.fail(
            f"--only={FLAGS.only!r} is not a lecture study; choose one of: {', '.join(names)}."
        )
    if overrides and not FLAGS.only:
        common.fail("--config.KEY=VALUE overrides need --only=NAME: each study has its own keys.")
    workdir = pathlib.Path(FLAGS.workdir)
    results = {}
    for name in [FLAGS.only] if FLAGS.only else names:
        start = time.time()
        result = run_study(name, FLAGS.quick, overrides, workdir / name)
        results[name] = {**result, "seconds": time.time() - start}
        held = "held" if result["held"] else "did not hold"
        print(f"{result['title']}: {held}", *result["measured"], sep="\n  ", flush=True)
    print(f"verdicts and figures in {write_index(workdir, results)}", flush=True)


if __name__ == "__main__":
    common.run(main)
