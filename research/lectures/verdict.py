"""verdict.md (and verdict.json) for a lecture study: the claim, the measured numbers, and
whether they support it. The only file writer besides the figures; it decides nothing itself.
"""

import json
import pathlib
from typing import Any


def write(
    workdir: pathlib.Path,
    *,
    title: str,
    claim: str,
    measured: list[str],
    held: bool,
    figures: list[str],
    numbers: dict[str, Any],
    note: str = "",
) -> dict[str, Any]:
    """Writes the verdict files and returns their content, so the launcher can print it."""
    held = bool(held)  # numpy comparisons give np.bool_, which JSON refuses
    lines = [
        f"# {title}",
        "",
        f"**Claim.** {claim}",
        "",
        "**Measured.**",
        "",
        *(f"- {line}" for line in measured),
        "",
        f"**Verdict: {'held' if held else 'did not hold'}.**" + (f" {note}" if note else ""),
        "",
        *(f"![{name}]({name})" for name in figures),
        "",
    ]
    (workdir / "verdict.md").write_text("\n".join(lines))
    result = {
        "title": title,
        "claim": claim,
        "held": held,
        "measured": measured,
        "note": note,
        "figures": figures,
        "numbers": numbers,
    }
    (workdir / "verdict.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result
