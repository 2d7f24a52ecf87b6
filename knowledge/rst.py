"""reStructuredText (Sphinx sources) to HTML with docutils, read by the HTML loader as Markdown.

docutils knows the standard directives and roles; a Sphinx project also uses its own
(``code-block``, ``toctree``, ``versionadded``, ``:ref:``, ``:doc:``, …), which docutils would
report as errors and drop with their content. Here the common ones (knowledge/sphinx.py) are registered:

- ``code-block`` / ``sourcecode`` / ``highlight``-style code: a literal block (kept as code);
- content directives (``tab``, ``only``, ``versionadded``, ``deprecated``, ``seealso``, …): their
  body is parsed as ordinary text, their argument kept as a leading line;
- navigation and generated content (``toctree``, ``autoclass``, ``literalinclude``, …): dropped
  (the text they would pull in is in other files or in code);
- cross-reference roles (``:ref:``, ``:doc:``, ``:option:``, ``:command:``, …): their text, as
  inline code for names of things (options, commands, files, …) and as plain text otherwise.

Any other unknown directive or role is dropped quietly (``report_level`` 5); nothing in a
file can make docutils read another file or emit raw HTML.
"""

from __future__ import annotations

from typing import Any, ClassVar

from docutils import nodes
from docutils.core import publish_parts
from docutils.parsers.rst import Directive, directives, roles
from docutils.writers.html5_polyglot import HTMLTranslator, Writer

from knowledge.sphinx import CODE_ROLES, CONTENT_DIRECTIVES, DROPPED_DIRECTIVES, TEXT_ROLES, role_text


class _CodeBlock(Directive):  # type: ignore[misc]
    """``.. code-block:: lang``: a literal block (the language is not needed to read it)."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec: ClassVar[dict[str, Any]] = {
        "linenos": directives.flag,
        "lineno-start": directives.unchanged,
        "emphasize-lines": directives.unchanged,
        "caption": directives.unchanged,
        "name": directives.unchanged,
        "class": directives.unchanged,
        "dedent": directives.unchanged,
        "force": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        return [nodes.literal_block("\n".join(self.content), "\n".join(self.content))]


class _Content(Directive):  # type: ignore[misc]
    """A directive whose body is ordinary text (its argument, if any, leads it)."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = None  # any option is accepted and ignored

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        if self.arguments:
            inline, _ = self.state.inline_text(self.arguments[0], self.lineno)
            container += nodes.paragraph(self.arguments[0], "", *inline)
        self.state.nested_parse(self.content, self.content_offset, container)
        return [container]


class _Dropped(Directive):  # type: ignore[misc]
    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = None

    def run(self) -> list[nodes.Node]:
        return []


def _role(code: bool) -> Any:
    def role(
        name: str, rawtext: str, text: str, lineno: int, inliner: Any, options: Any = None, content: Any = None
    ) -> tuple[list[nodes.Node], list[nodes.Node]]:
        shown = role_text(text)
        node: nodes.Node = nodes.literal(rawtext, shown) if code else nodes.Text(shown)
        return [node], []

    return role


def _register() -> None:
    for name in ("code-block", "sourcecode"):
        directives.register_directive(name, _CodeBlock)
    for name in CONTENT_DIRECTIVES:
        directives.register_directive(name, _Content)
    for name in DROPPED_DIRECTIVES:
        directives.register_directive(name, _Dropped)
    for name in CODE_ROLES:
        roles.register_local_role(name, _role(code=True))
    for name in TEXT_ROLES:
        roles.register_local_role(name, _role(code=False))


_register()


class _Translator(HTMLTranslator):  # type: ignore[misc]
    """docutils' HTML with inline literals as ``<code>`` and admonitions as ``<div>`` (the HTML
    reader keeps ``<code>`` as inline code and drops ``<aside>`` as page furniture)."""

    def visit_literal(self, node: nodes.literal) -> None:
        self.body.append(self.starttag(node, "code", ""))
        self.body.append(self.encode(node.astext()))
        self.body.append("</code>")
        raise nodes.SkipNode

    def visit_admonition(self, node: nodes.Element, name: str = "") -> None:
        self.body.append(self.starttag(node, "div", CLASS="admonition"))

    def depart_admonition(self, node: nodes.Element | None = None) -> None:
        self.body.append("</div>\n")


class _Writer(Writer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.translator_class = _Translator


_SETTINGS = {
    "report_level": 5,  # no system messages in the output
    "halt_level": 5,  # never raise on a bad construct: keep what can be read
    "file_insertion_enabled": False,  # ``.. include::`` must not read the server's files
    "raw_enabled": False,  # ``.. raw:: html`` is not passed through
    "doctitle_xform": False,  # the page title stays a heading, as in Markdown
    "syntax_highlight": "none",  # code stays plain text (no Pygments needed)
    "warning_stream": False,
    "embed_stylesheet": False,
    "input_encoding": "unicode",
    "initial_header_level": 1,  # the page title is a level-1 heading, as "# Title" in Markdown
}


def rst_to_html(text: str) -> str:
    """The HTML body of ``text`` (reStructuredText)."""
    parts = publish_parts(source=text, writer=_Writer(), settings_overrides=_SETTINGS)
    return f"<html><body><main>{parts['body']}</main></body></html>"
