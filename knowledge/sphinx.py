"""Sphinx's vocabulary, shared by the reStructuredText reader (knowledge/rst.py) and the MyST
Markdown reader (knowledge/loaders.py): which roles name things, which directives hold text and
which only navigate. No docutils here: reading a Markdown file must not load it."""

from __future__ import annotations

import re

# Roles whose text names a thing one types or looks for: shown as inline code.
CODE_ROLES = (
    "option", "command", "program", "envvar", "file", "samp", "kbd", "makevar", "class", "func",
    "meth", "mod", "attr", "data", "exc", "obj", "const", "var", "confval", "setting", "py:class",
    "py:func", "py:meth", "py:mod", "py:attr", "py:data", "py:exc", "py:obj", "c:func", "c:type",
)  # fmt: skip
# Roles whose text reads as words: shown as plain text.
TEXT_ROLES = ("ref", "doc", "term", "guilabel", "menuselection", "abbr", "dfn", "numref", "any", "keyword")
# Directives whose body is ordinary text (their argument leads it).
CONTENT_DIRECTIVES = (
    "tab", "tabs", "tab-set", "tab-item", "only", "versionadded", "versionchanged", "deprecated",
    "seealso", "centered", "hlist", "glossary", "productionlist", "card", "grid", "grid-item",
    "grid-item-card", "dropdown", "rst-class", "index-only",
)  # fmt: skip
# Navigation and generated content: dropped (what they pull in is in other files or in code).
DROPPED_DIRECTIVES = (
    "toctree", "literalinclude", "automodule", "autoclass", "autofunction", "automethod",
    "autoattribute", "autodata", "autoexception", "autosummary", "index", "highlight", "currentmodule",
    "module", "sectionauthor", "codeauthor", "tabularcolumns", "graphviz", "plot", "mermaid",
    "todo", "todolist", "ifconfig", "program", "default-role", "default-domain", "contents",
    "include", "raw", "image", "figure", "eval-rst",
)  # fmt: skip
# "inline text <target>" in a cross-reference: the text is what a reader sees.
_TITLED = re.compile(r"^(.*?)\s*<[^<>]+>$", re.S)


def role_text(text: str) -> str:
    """What a role's text shows a reader: ``~mod.func`` as ``mod.func``, ``the guide <guide>`` as
    ``the guide``."""
    shown = text.lstrip("~!")
    if match := _TITLED.match(shown):
        shown = match.group(1) or shown
    return shown
