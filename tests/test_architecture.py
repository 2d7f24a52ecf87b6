"""The layering rules, checked on the source: the core (``bot/``) imports only itself, the
standard library and numpy — never ``knowledge/``, ``adapters/``, ``workers/`` nor a chat,
cloud, database or queue SDK. Every import counts: module level, inside functions and under
``TYPE_CHECKING``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "bot"

ALLOWED_THIRD_PARTY = frozenset({"numpy"})
OUR_OTHER_LAYERS = frozenset({"knowledge", "adapters", "workers", "tests", "bench"})
SDKS = frozenset({
    "slack_bolt", "slack_sdk", "botbuilder", "botframework", "microsoft_agents", "aiohttp", "pinecone",
    "cohere", "openai", "llama_cpp", "onnxruntime", "tokenizers", "celery", "kombu", "redis", "sqlalchemy",
    "alembic", "psycopg", "fastapi", "starlette", "httpx", "requests", "pydantic", "pydantic_settings",
})


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``tree``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def core_violations(root: Path) -> list[str]:
    """Every import under ``root`` that the core may not make, as ``path:line: module``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for line, top in imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if top == "bot" or top == "__future__" or top in ALLOWED_THIRD_PARTY:
                continue
            if top in sys.stdlib_module_names and top not in OUR_OTHER_LAYERS:
                continue
            out.append(f"{path.relative_to(root.parent)}:{line}: {top}")
    return out


def test_core_imports_only_itself_the_standard_library_and_numpy() -> None:
    assert core_violations(CORE) == []


@pytest.mark.parametrize("module", sorted(OUR_OTHER_LAYERS | SDKS))
def test_the_check_catches_a_forbidden_import(tmp_path: Path, module: str) -> None:
    # The rule above must fail for each layer and SDK it is meant to keep out, wherever the
    # import hides (a function body, a TYPE_CHECKING block).
    pkg = tmp_path / "bot"
    pkg.mkdir()
    (pkg / "ok.py").write_text("import json\nfrom bot.types import Answer\nimport numpy as np\n")
    (pkg / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        f"    from {module}.x import y\n"
        "def f():\n"
        f"    import {module}\n"
    )
    assert core_violations(pkg) == [f"bot/bad.py:3: {module}", f"bot/bad.py:5: {module}"]
