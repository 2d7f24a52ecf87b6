"""Rendering the HTML pages: ``string.Template`` files in ``templates/`` with escaped values.

The pages are plain HTML; their data comes from the JSON API, fetched by the small scripts in
``static/``. Values a script needs at start are embedded as JSON in a
``<script type="application/json" id="config">`` element, escaped so no text can close it.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from string import Template

from fastapi.responses import HTMLResponse

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def json_for_html(value: object) -> str:
    """JSON that is safe inside a <script> element (no ``<``, ``>`` or ``&`` characters)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(name: str, *, config: object = None, status_code: int = 200, **values: str) -> HTMLResponse:
    """The template ``name`` with ``values`` HTML-escaped and ``config`` embedded as JSON."""
    escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
    body = _template(name).substitute(escaped, config=json_for_html(config or {}))
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})
