"""The CLI loads only what a command needs (issue 16): checked on the modules a fresh process
imported, not on timings (the machine's load would make those flaky)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs the CLI like `python -m adapters.cli ...` and writes the names of the modules imported
# to the file named by the first argument, at exit.
PROBE = """
import atexit, json, runpy, sys
out = sys.argv[1]
def dump():
    with open(out, "w") as fh:
        json.dump({"modules": sorted(sys.modules)}, fh)
atexit.register(dump)
sys.argv = ["supportbot", *sys.argv[2:]]
runpy.run_module("adapters.cli", run_name="__main__", alter_sys=True)
"""

# Never needed to print help, and expensive to import (they dominate a cold start).
HEAVY = {"sqlalchemy", "numpy", "onnxruntime", "tokenizers", "pydantic_settings"}
# The answering core, the embedding runtime and numpy: an unchanged re-ingest embeds nothing,
# searches nothing and writes no vector (and a Markdown file without front matter needs no YAML).
NOT_FOR_UNCHANGED_INGEST = {
    "numpy",
    "onnxruntime",
    "tokenizers",
    "yaml",
    "bot.answering",
    "bot.retrieval",
    "bot.calibration",
    "bot.verified",
    "adapters.resilience",
}


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_") and not k.endswith("REDIS_URL")}
    env.update(SUPPORTBOT_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    dump = tmp_path / "modules.json"
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(dump), *args],
        env=env,
        cwd=tmp_path,  # no .env of the developer's
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run, json.loads(dump.read_text())


def loaded(seen: dict[str, list[str]], names: set[str]) -> set[str]:
    return {m for m in seen["modules"] if m in names or m.split(".")[0] in names}


def test_help_imports_no_heavy_module_and_no_command_dependency(tmp_path: Path) -> None:
    run, seen = run_cli(tmp_path, "--help")
    assert run.returncode == 0, run.stderr
    assert "ingest" in run.stdout and "ask" in run.stdout and "sources" in run.stdout
    assert loaded(seen, HEAVY) == set()
    assert loaded(seen, {"adapters.factory", "adapters.settings", "knowledge"}) == set()


def test_an_unchanged_reingest_loads_no_model_and_no_answering_core(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "vpn.md").write_text("# VPN\n\nTo connect to the VPN, open the client and sign in.\n")
    (kb / "printer.md").write_text("# Printer\n\nThe printer on floor 2 needs a badge to release jobs.\n")
    first, seen = run_cli(tmp_path, "ingest", str(kb))
    assert first.returncode == 0, first.stderr
    assert "added 2" in first.stdout
    assert "onnxruntime" in seen["modules"]  # the probe sees what a real embedding loads
    again, seen = run_cli(tmp_path, "ingest", str(kb))
    assert again.returncode == 0, again.stderr
    assert "added 0, changed 0, unchanged 2" in again.stdout
    assert loaded(seen, NOT_FOR_UNCHANGED_INGEST) == set()


def test_ask_with_the_model_preloaded_on_a_thread_answers(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "vpn.md").write_text("# VPN\n\nTo connect to the VPN, open the client and sign in with your badge.\n")
    assert run_cli(tmp_path, "ingest", str(kb))[0].returncode == 0
    run, seen = run_cli(tmp_path, "ask", "--json", "How do I connect to the VPN?")
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["decision"] == "answered" and "open the client" in answer["text"]
    assert "onnxruntime" in seen["modules"]
