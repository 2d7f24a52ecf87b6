"""Loaders: real files of every supported type, every kind of bad input, and a fuzz test."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC
from pathlib import Path

import docx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import SourceError
from bot.identity import corpus_id, document_id
from bot.types import Document
from knowledge.loaders import SUPPORTED_SUFFIXES, iter_documents, load_bytes, load_file

MB = 1 << 20


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal valid PDF, one Helvetica text line per line of each page (``""`` = no text)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        lines = " ".join(f"({esc(line)}) Tj T*" for line in text.split("\n"))
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {lines} ET".encode("latin-1") if text else b""
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objs.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    info = b""
    if title:
        objs.append(f"<< /Title ({esc(title)}) >>".encode("latin-1"))
        info = b"/Info %d 0 R " % len(objs)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, info, xref)
    return bytes(out)


def make_docx() -> bytes:
    d = docx.Document()
    d.core_properties.title = "Employee Handbook"
    d.add_paragraph("Welcome to the handbook.")
    d.add_heading("Leave", level=1)
    d.add_paragraph("Everyone gets 25 days of paid leave a year.")
    d.add_heading("Sick leave", level=2)
    d.add_paragraph("Tell your manager before 10am.")
    d.add_paragraph("A doctor's note is needed after three days.")
    table = d.add_table(rows=2, cols=2)
    for r, row in enumerate([("Days", "Pay"), ("1-3", "100%")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_heading("Expenses", level=1)
    d.add_paragraph("Submit receipts within 30 days.")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


HTML = """<!doctype html><html><head><title>Refunds - Acme Help Center</title>
<script>trackVisitor("secret-tracker");</script><style>body { color: red }</style></head>
<body>
<nav><ul><li><a href="/">Home navigation</a></li><li><a href="/pricing">Pricing navigation</a></li></ul></nav>
<header><p>Acme Corp banner header</p></header>
<div class="content">
<h1>Refunds</h1>
<p>We refund any purchase within thirty days. Write to support with your order number and we
will process the refund within five business days.</p>
<h2>Enterprise plans</h2>
<p>Enterprise customers receive a pro-rated refund of the unused months on annual plans.</p>
<h3>Invoices</h3>
<p>Refunds appear on the next invoice as a credit line, never as a cash payment.</p>
</div>
<footer><p>Copyright Acme footer legal text</p></footer>
</body></html>"""

MARKDOWN = """# Billing

How we bill you.

## Refunds

Refunds take five days.
They go back to the card.

Ask support for help.

### Enterprise

Enterprise refunds are pro-rated.

```
code block

with a blank line
```

## Invoices

Invoices are monthly.
"""


def load(path: Path, max_bytes: int = MB) -> list[Document]:
    return load_file(path, source="kb", root=path.parent, max_bytes=max_bytes)


def reason(path: Path, max_bytes: int = MB) -> str:
    with pytest.raises(SourceError) as info:
        load(path, max_bytes)
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: {info.value.reason}"  # one line naming file and reason
    assert "\n" not in str(info.value)
    return info.value.reason


# --- formats ---------------------------------------------------------------------------------


def test_markdown_keeps_nested_headings(tmp_path: Path) -> None:
    path = tmp_path / "billing.md"
    path.write_text(MARKDOWN)
    [doc] = load(path)
    assert doc.id == document_id("kb", path.as_uri()) and doc.url == path.as_uri()
    assert doc.source == "kb"
    assert doc.title == "Billing"
    assert doc.url == path.as_uri()
    assert doc.updated_at is not None and doc.updated_at.tzinfo == UTC
    assert doc.access == ("public",)
    assert [s.heading_path for s in doc.sections] == [
        ("Billing",),
        ("Billing", "Refunds"),
        ("Billing", "Refunds", "Enterprise"),
        ("Billing", "Invoices"),
    ]
    refunds = doc.sections[1].text
    assert refunds == "Refunds take five days.\nThey go back to the card.\n\nAsk support for help."
    assert "code block\n\nwith a blank line" in doc.sections[2].text
    assert len(doc.content_hash) == 64


def test_markdown_front_matter_title_and_plain_heading_text(tmp_path: Path) -> None:
    path = tmp_path / "guide.markdown"
    path.write_text("---\ntitle: 'Setup: the guide'\ndate: 2024-13-45\n---\n## Install *fast*\n\nRun it.\n")
    [doc] = load(path)
    assert doc.title == "Setup: the guide"
    assert doc.sections[0].heading_path == ("Install fast",)
    assert "title:" not in doc.sections[0].text


def test_setext_underline_makes_only_its_own_line_a_heading(tmp_path: Path) -> None:
    # A plain-text README rendered as lines: the paragraph above "Support" must not become
    # part of the heading (Markdown would make all three lines one heading).
    path = tmp_path / "readme.md"
    path.write_text("Run the configure script\nwith the usual options.\nSupport\n-------\nAsk on the list.\n")
    [doc] = load(path)
    assert [s.heading_path for s in doc.sections] == [(), ("Support",)]
    assert doc.sections[0].text == "Run the configure script\nwith the usual options."
    assert doc.sections[1].text == "Ask on the list."


def test_content_hash_ignores_mtime_but_not_content(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# A\n\nOne.\n")
    first = load(path)[0]
    os.utime(path, (1_000_000, 1_000_000))
    touched = load(path)[0]
    assert touched.updated_at != first.updated_at
    assert touched.content_hash == first.content_hash
    path.write_text("# A\r\n\r\nOne.   \r\n\r\n\r\n")  # same text after normalisation
    assert load(path)[0].content_hash == first.content_hash
    path.write_text("# A\n\nTwo.\n")
    assert load(path)[0].content_hash != first.content_hash


def test_html_keeps_main_content_and_headings(tmp_path: Path) -> None:
    path = tmp_path / "refunds.html"
    path.write_text(HTML)
    [doc] = load(path)
    assert doc.title == "Refunds"
    assert [s.heading_path for s in doc.sections] == [
        ("Refunds",),
        ("Refunds", "Enterprise plans"),
        ("Refunds", "Enterprise plans", "Invoices"),
    ]
    text = "\n".join(s.text for s in doc.sections)
    assert "thirty days" in text and "credit line" in text
    for junk in ("navigation", "banner header", "footer legal", "secret-tracker", "color: red"):
        assert junk not in text


RST = """\
Proxy settings
==============

Set :envvar:`HTTPS_PROXY` or pass :option:`--proxy`, as :ref:`the network page <net>` says.

.. code-block:: console

   $ tool --proxy http://proxy:3128 sync

.. tab:: Windows

   Use ``tool.exe`` instead.

.. toctree::
   :hidden:

   network

Limits
------

- ``--timeout``: seconds to wait.
- ``--retries``: attempts.

.. note::

   Proxies that rewrite TLS need their CA.

.. include:: /etc/passwd

.. raw:: html

   <script>steal()</script>
"""


def test_rst_keeps_headings_code_lists_and_sphinx_text(tmp_path: Path) -> None:
    path = tmp_path / "proxy.rst"
    path.write_text(RST)
    [doc] = load(path)
    assert doc.title == "Proxy settings"
    assert [s.heading_path for s in doc.sections] == [("Proxy settings",), ("Proxy settings", "Limits")]
    first, limits = doc.sections[0].text, doc.sections[1].text
    # Sphinx roles keep their text (names of things as inline code); code-block is code.
    assert "Set `HTTPS_PROXY` or pass `--proxy`, as the network page says." in first
    assert "```\n$ tool --proxy http://proxy:3128 sync\n```" in first
    assert "Use `tool.exe` instead." in first  # a tab's body is text
    assert "\nnetwork" not in first and "hidden" not in first  # the toctree is navigation
    assert "- `--timeout`: seconds to wait.\n- `--retries`: attempts." in limits
    assert "Proxies that rewrite TLS need their CA." in limits  # admonitions are content
    # Nothing is pulled in from the server's files and no raw HTML passes through.
    text = first + limits
    assert "root:" not in text and "steal" not in text and "include" not in text


def test_plain_text_in_an_rst_file_stays_its_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.rst"
    path.write_text("Plain notes\n\nThe server restarts at noon.\n")
    [doc] = load(path)
    assert "The server restarts at noon." in doc.sections[0].text


def test_gzipped_documents_read_by_the_name_inside_and_bombs_refused(tmp_path: Path) -> None:
    import gzip

    guide = tmp_path / "pip_install.rst.gz"
    guide.write_bytes(gzip.compress(b"Install\n=======\n\n.. code-block:: console\n\n   $ pip install x\n"))
    [doc] = load(guide)
    assert doc.title == "Install"
    assert "```\n$ pip install x\n```" in doc.sections[0].text
    plain = tmp_path / "changelog.gz"  # no name inside: what it is cannot be told
    plain.write_bytes(gzip.compress(b"1.0: first release"))
    bomb = tmp_path / "bomb.txt.gz"
    bomb.write_bytes(gzip.compress(b"a" * (2 * MB)))  # about 2 KB on disk
    broken = tmp_path / "broken.md.gz"
    broken.write_bytes(gzip.compress(b"# Title\n\nText.\n")[:-12])
    assert "unsupported" in reason(plain)
    assert reason(bomb) == "larger than the 1 MB limit once decompressed"
    assert reason(broken).startswith("not a readable gzip file")


def test_html_inside_markdown_reads_as_what_it_shows(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        '# Tool\n\n<p align="center"><img src="logo.png" alt="Tool logo"></p>\n\n'
        "<details>\n<summary>Advanced options</summary>\n\nSet `TOOL_DEBUG=1`, not `<b>`.\n\n</details>\n\n"
        "Press <kbd>Ctrl</kbd>+<kbd>C</kbd> to stop.<br>Then <b>restart</b> it; a List<String> stays.\n\n"
        "<table><tr><th>Key</th><th>Value</th></tr><tr><td>a</td><td>b</td></tr></table>\n\n<!-- note to self -->\n"
    )
    [doc] = load(readme)
    assert doc.sections[0].text == (
        "Tool logo\n\nAdvanced options\n\nSet `TOOL_DEBUG=1`, not `<b>`.\n\n"
        "Press `Ctrl`+`C` to stop.\nThen restart it; a List<String> stays.\n\n| Key | Value |\n|---|---|\n| a | b |"
    )
    page = tmp_path / "tags.html"  # an HTML page that talks about tags keeps them as text
    page.write_text("<html><body><main><p>Wrap bold text in &lt;b&gt; tags.</p></main></body></html>")
    assert load(page)[0].sections[0].text == "Wrap bold text in <b> tags."


def test_myst_directives_in_markdown(tmp_path: Path) -> None:
    path = tmp_path / "index.md"
    path.write_text(
        "# Guide\n\nStart here.\n\n```{toctree}\n:hidden:\n\ninstall\n```\n\n"
        "```{note}\n:class: tip\nBack up first.\n```\n\n```{code-block} console\n$ tool init\n```\n\n"
        "Edit {file}`tool.toml`, see {ref}`the setup page <setup>`.\n\n```{tool-cli}\n$ tool sync\n```\n"
    )
    [doc] = load(path)
    assert doc.sections[0].text == (
        "Start here.\n\nBack up first.\n\n```\n$ tool init\n```\n\n"
        "Edit `tool.toml`, see the setup page.\n\n```\n$ tool sync\n```"  # a project's own directive: code
    )


def test_html_without_a_declared_charset_is_read_as_utf8_unless_it_is_not(tmp_path: Path) -> None:
    utf8 = tmp_path / "menu.html"
    utf8.write_bytes("<html><body><h1>Café menu</h1><p>Crème brûlée, 5 €.</p></body></html>".encode())
    [doc] = load(utf8)
    assert doc.title == "Café menu" and doc.sections[0].text == "Crème brûlée, 5 €."
    legacy = tmp_path / "old.html"  # not valid UTF-8: read as before (Latin-1)
    legacy.write_bytes("<html><body><p>Crème brûlée.</p></body></html>".encode("latin-1"))
    assert load(legacy)[0].sections[0].text == "Crème brûlée."
    declared = tmp_path / "declared.html"
    declared.write_bytes(
        '<html><head><meta charset="iso-8859-15"></head><body><p>5 €.</p></body></html>'.encode("iso-8859-15")
    )
    assert load(declared)[0].sections[0].text == "5 €."


def test_pdf_pages_title_and_dehyphenation(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(
        make_pdf(["Refunds take thirty days. Contact sup-\nport for help.", "", "Page three."], "Acme Manual")
    )
    [doc] = load(path)
    assert doc.title == "Acme Manual"
    assert [s.heading_path for s in doc.sections] == [("Page 1",), ("Page 3",)]  # page 2 has no text
    assert doc.sections[0].text == "Refunds take thirty days. Contact support for help."


def test_pdf_without_title_uses_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "price-list.pdf"
    path.write_bytes(make_pdf(["Prices."]))
    assert load(path)[0].title == "price-list"


def test_docx_headings_tables_and_title(tmp_path: Path) -> None:
    path = tmp_path / "handbook.docx"
    path.write_bytes(make_docx())
    [doc] = load(path)
    assert doc.title == "Employee Handbook"
    assert [(s.heading_path, s.text) for s in doc.sections] == [
        ((), "Welcome to the handbook."),
        (("Leave",), "Everyone gets 25 days of paid leave a year."),
        (
            ("Leave", "Sick leave"),
            "Tell your manager before 10am.\n\nA doctor's note is needed after three days."
            "\n\nDays | Pay\n1-3 | 100%",  # a table is one paragraph, a row a line
        ),
        (("Expenses",), "Submit receipts within 30 days."),
    ]


def test_plain_text_and_extensionless_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("First paragraph.\n\n\n\nSecond\tparagraph.\n")
    (tmp_path / "README").write_text("Read me.\n")
    [notes] = load(tmp_path / "notes.txt")
    assert notes.title == "notes"
    assert notes.sections[0].heading_path == ()
    assert notes.sections[0].text == "First paragraph.\n\nSecond\tparagraph."
    assert load(tmp_path / "README")[0].sections[0].text == "Read me."


def test_beir_jsonl_corpus(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "d1", "title": "Refunds", "text": "Refunds take five days."},
        {"_id": "d2", "title": "", "text": "No title here."},
        {"_id": "d3", "title": "Only a title", "text": ""},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    docs = load(path, max_bytes=200)  # the limit applies to each line of a corpus
    assert [(corpus_id(d.id), d.title, d.sections[0].text) for d in docs] == [
        ("d1", "Refunds", "Refunds take five days."),
        ("d2", "", "No title here."),
        ("d3", "Only a title", "Only a title"),
    ]
    assert docs[0].url == path.as_uri() + "#d1"
    assert docs[0].id == document_id("kb", path.as_uri()) + "#d1"  # (source, file, _id)
    assert len({d.content_hash for d in docs}) == 3

    path.write_text(json.dumps(rows[0]) + "\n{not json\n")
    assert reason(path) == "line 2: not valid JSON"
    path.write_text('{"title": "no id"}\n')
    assert reason(path) == 'line 1: expected an object with "_id", "title" and "text"'


# --- bad input -------------------------------------------------------------------------------


def test_bad_inputs_each_give_one_clear_reason(tmp_path: Path) -> None:
    cases = {
        "corrupt.pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", "not a readable PDF: "),
        "scanned.pdf": (make_pdf(["", ""]), "no text layer (scanned PDF?)"),
        "empty.md": (b"", "empty file"),
        "blank.txt": (b"  \n\n\t\n", "empty file"),
        "image.txt": (bytes(range(256)) * 4, "binary file, not text"),
        "README": (b"\x7fELF\x02\x01\x01\x00\x00\x00", "binary file, not text"),
        "mojibake.txt": (bytes(range(128, 256)), "not UTF-8 text"),
        "broken.docx": (b"PK\x03\x04 this is not a zip", "not a readable DOCX: "),
        "picture.png": (b"\x89PNG\r\n", "unsupported file type .png"),
        "script.html": (b"<html><script>only()</script></html>", "no main content found in the HTML"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert reason(tmp_path / name).startswith(expected), name


def test_legacy_encodings_are_decoded(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("Café crème brûlée,\r\ns'il vous plaît.\r\n".encode("cp1252"))
    (tmp_path / "wide.md").write_bytes("# Grüße\n\nAus Köln.\n".encode("utf-16"))
    assert load(tmp_path / "latin.txt")[0].sections[0].text == "Café crème brûlée,\ns'il vous plaît."
    [wide] = load(tmp_path / "wide.md")
    assert (wide.title, wide.sections[0].text) == ("Grüße", "Aus Köln.")


def test_size_limit_names_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 100)
    assert reason(path, max_bytes=100) == "larger than the 100 bytes limit"
    assert len(load(path, max_bytes=500)) == 1
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as f:
        f.truncate(50 * MB + 1)  # sparse: the limit is checked before anything is read
    assert reason(huge, max_bytes=50 * MB) == "larger than the 50 MB limit"


def test_iter_documents_reports_bad_files_and_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "guides" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("hidden")
    (root / ".hidden.md").write_text("# hidden")
    (root / "~$lock.docx").write_bytes(b"lock")
    (root / "a.md").write_text("# A\n\nAlpha.\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 nope")
    (root / "empty.txt").write_bytes(b"")
    (root / "guides" / "b.html").write_text(HTML)
    (root / "guides" / "deep" / "c.pdf").write_bytes(make_pdf(["Deep page."]))
    (root / "guides" / "logo.png").write_bytes(b"\x89PNG")
    single = tmp_path / "single.txt"
    single.write_text("Single file.")

    items = list(iter_documents([root, single, tmp_path / "missing"], source="kb", max_bytes=MB))
    docs = [i for i in items if isinstance(i, Document)]
    errors = {Path(e.path).name: e.reason for e in items if isinstance(e, SourceError)}
    files = [root / "a.md", root / "guides" / "b.html", root / "guides" / "deep" / "c.pdf", single]
    assert [d.url for d in docs] == [f.as_uri() for f in files]
    assert [d.id for d in docs] == [document_id("kb", f.as_uri()) for f in files]
    assert set(errors) == {"broken.pdf", "empty.txt", "logo.png", "missing"}
    assert errors["empty.txt"] == "empty file"
    assert errors["logo.png"] == "unsupported file type .png"
    assert errors["missing"] == "no such file or directory"
    assert errors["broken.pdf"].startswith("not a readable PDF")


def test_iter_documents_size_limit(tmp_path: Path) -> None:
    (tmp_path / "big.md").write_text("x" * (MB + 1))
    [error] = iter_documents([tmp_path], source="kb", max_bytes=MB)
    assert isinstance(error, SourceError) and error.reason == "larger than the 1 MB limit"


def test_load_bytes_picks_parser_by_content_type_then_suffix() -> None:
    url = "https://help.example.com/refunds"
    [page] = load_bytes(HTML.encode(), name="refunds", url=url, source="web", content_type="text/html")
    assert (page.id, page.url, page.title, page.updated_at) == ("web:" + url, url, "Refunds", None)
    assert page.sections[1].heading_path == ("Refunds", "Enterprise plans")

    latin = "# Menü\n\nÜber uns.".encode("latin-1")
    [md] = load_bytes(
        latin, name="x", url=url, source="web", content_type="text/markdown; charset=ISO-8859-1"
    )
    assert (md.title, md.sections[0].text) == ("Menü", "Über uns.")

    [pdf] = load_bytes(make_pdf(["PDF body."]), name="guide.pdf", url=url, source="web")
    assert (pdf.title, pdf.sections[0].text) == ("guide", "PDF body.")
    [pdf] = load_bytes(
        make_pdf(["PDF body."]), name="g", url=url, source="web", content_type="application/pdf"
    )
    assert pdf.sections[0].text == "PDF body."

    # Raw file hosts serve Markdown and reStructuredText as text/plain: the name says more.
    raw = "https://raw.example.com/docs/setup"
    [md] = load_bytes(b"# Setup\n\n## Proxy\n\nSet it.\n", name="setup.md", url=raw, source="web", content_type="text/plain")
    assert (md.title, md.sections[-1].heading_path) == ("Setup", ("Setup", "Proxy"))
    [rst] = load_bytes(
        b"Setup\n=====\n\n.. code-block:: sh\n\n   tool init\n", name="setup.rst", url=raw, source="web",
        content_type="text/plain; charset=utf-8",
    )
    assert rst.title == "Setup" and "```\ntool init\n```" in rst.sections[0].text
    [txt] = load_bytes(b"# not a heading in a .txt", name="notes.txt", url=raw, source="web", content_type="text/plain")
    assert txt.sections[0].text == "# not a heading in a .txt"

    with pytest.raises(SourceError, match="unsupported content type image/png"):
        load_bytes(b"\x89PNG", name="logo", url=url, source="web", content_type="image/png")
    with pytest.raises(SourceError, match=r"unsupported file type \.exe"):
        load_bytes(b"MZ", name="setup.exe", url=url, source="web", content_type="application/octet-stream")


# --- fuzz ------------------------------------------------------------------------------------

_SAMPLES = {".pdf": make_pdf(["Fuzz me.", "Again."], "T"), ".docx": make_docx(), ".html": HTML.encode()}
_PREFIXES = [
    b"",
    b"%PDF-1.4\n",
    b"PK\x03\x04",
    b"<html><body><h1>",
    b"\xff\xfe",
    b"---\ntitle: ",
    b'{"_id": 1',
]


def _check(data: bytes, suffix: str) -> None:
    try:
        docs = load_bytes(data, name=f"fuzz{suffix}", url="https://example.com/f", source="fuzz")
    except SourceError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        assert all(isinstance(d, Document) and d.sections for d in docs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    suffix=st.sampled_from(sorted(SUPPORTED_SUFFIXES)),
    prefix=st.sampled_from(_PREFIXES),
    data=st.one_of(st.binary(max_size=2000), st.text(max_size=500).map(str.encode)),
)
def test_fuzz_arbitrary_bytes_give_documents_or_source_error(suffix: str, prefix: bytes, data: bytes) -> None:
    _check(prefix + data, suffix)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suffix=st.sampled_from(sorted(_SAMPLES)), cut=st.floats(0, 1), junk=st.binary(min_size=1, max_size=64))
def test_fuzz_damaged_real_files(suffix: str, cut: float, junk: bytes) -> None:
    sample = _SAMPLES[suffix]
    at = int(cut * len(sample))
    _check(sample[:at] + junk + sample[at + len(junk) :], suffix)


@pytest.mark.parametrize("line", ["# of seats is limited to 50 per plan.", "## 2 steps are enough."])
def test_html_text_that_starts_with_a_hash_stays_text(line: str) -> None:
    # Alone on a page it used to become a heading with no body: "no text found", the page lost.
    for html in (f"<p>{line}</p>", f"<h2>Plans</h2><p>{line}</p><p>Ask sales for more.</p>"):
        docs = load_bytes(html.encode(), name="plans.html", url="https://kb.example/plans", source="kb")
        body = "\n".join(s.text for s in docs[0].sections)
        assert line[line.index(" ") + 1 :] in body
        assert all(line.lstrip("# ") not in " ".join(s.heading_path) for s in docs[0].sections)
