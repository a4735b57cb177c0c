"""Summarises a sweep directory: python -m launch.report DIR writes results.csv, report.md, plots.

A thin absl main over research.report.write_report; a UserError is printed without a traceback.
"""

import sys

from absl import app

from research import report
from research.errors import UserError


def main(argv: list[str]) -> int:
    try:
        if len(argv) != 2:
            raise UserError(
                "Pass exactly one sweep directory: python -m launch.report DIR, where DIR holds "
                f"one sub-directory per point (got arguments {argv[1:]})."
            )
        summary = report.write_report(argv[1])
    except UserError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    best = summary.best
    if best:
        config = ", ".join(f"{k}={v}" for k, v in best.overrides.items()) or "the default"
        mean, std = best.val
        print(
            f"Best configuration: {config}: val {summary.results.target.metric} "
            f"{mean:.4g} ± {std:.4g} (n={best.n})."
        )
    for path in summary.files:
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
