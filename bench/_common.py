"""Shared helpers for the benchmarks (not a test suite: they print figures and write JSON)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EVALDATA = Path(os.environ.get("SUPPORTBOT_EVALDATA", ROOT.parent / "shared" / "evaldata"))
RESULTS = ROOT / "bench" / "results"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def emit(name: str, figures: dict[str, object], as_json: bool) -> None:
    """Save figures to bench/results/<name>.json and print them (one JSON object with --json)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
    else:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:>{width}}  {value}")
