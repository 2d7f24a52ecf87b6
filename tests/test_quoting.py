"""Answers a person can act on: quotes keep sentences, commands, lists and code whole, from the
loader (HTML, AsciiDoc) through chunking and the extractive answerer to the Slack, Teams and web
renderers; the same page in two formats is cited once."""

from __future__ import annotations

import re
from pathlib import Path

from adapters.slack.render import to_mrkdwn
from adapters.teams.render import answer_card
from bot.answering import AnswerService, DeclinePolicy, check_citations
from bot.evaluation import reference_recall
from bot.extractive import ExtractiveGenerator, read_units
from bot.fingerprint import document_fingerprint, same_document
from bot.phrasing import STATE_AT, hedge
from bot.ports import GenerationRequest
from bot.types import Answer, Chunk, Decision, Document, Question, ScoredChunk, Section
from knowledge.chunking import chunk_document
from knowledge.loaders import load_file
from tests.contracts import make_chunk

BRANCH_DOC = (
    "Branches let you work on a feature without touching the main line. "
    "A branch is a movable pointer to a commit.\n\n"
    "Instead of basing a new branch on the current HEAD (the default), use:\n\n"
    "```\n$ git switch -c topic origin/main\n# the new branch starts at origin/main\n```\n\n"
    "The switch fails when you have local changes that would be overwritten."
)


def _request(question: str, texts: list[str], titles: list[str] | None = None) -> GenerationRequest:
    hits = []
    for i, text in enumerate(texts):
        chunk = make_chunk(f"d{i}", text=text)
        if titles:
            chunk = Chunk(**{**chunk.__dict__, "title": titles[i], "heading_path": ()})
        hits.append(ScoredChunk(chunk, 1.0 - i / 10, {"dense": 0.9}))
    return GenerationRequest(question, tuple(hits))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


# -- the extractive answerer quotes, it does not compose --------------------------------------------
def test_a_code_block_after_use_colon_stays_attached() -> None:
    # A window of a few words: only the rule keeps the code block with its introduction.
    text = ExtractiveGenerator(window_words=8).generate(
        _request("How do I base a new branch on something other than HEAD?", [BRANCH_DOC])
    ).text
    assert "use:" in text
    assert "$ git switch -c topic origin/main" in text
    # The introduction comes right before its code block, and the code block is whole.
    assert re.search(r"use:\n\n```\n\$ git switch -c topic origin/main\n# the new branch starts at origin/main\n```", text)


def test_an_introduction_at_the_window_edge_pulls_in_the_list_it_introduces() -> None:
    doc = (
        "The exporter writes reports every night and keeps them for a month. " * 3
        + "To change the report schedule, set these options:\n\n"
        "- `schedule.hour`: the hour of the run\n"
        "- `schedule.days`: the weekdays to run on\n"
        "- `schedule.zone`: the time zone of the hour"
    )
    text = ExtractiveGenerator(window_words=12).generate(_request("How do I change the report schedule?", [doc])).text
    for item in ("- `schedule.hour`: the hour of the run", "- `schedule.days`", "- `schedule.zone`"):
        assert item in text
    assert text.index("set these options:") < text.index("- `schedule.hour`")


def test_a_sentence_is_never_cut() -> None:
    doc = (
        "Backups run every night at two o'clock in the morning, local time of the server. "
        "Each backup is kept for thirty days, then deleted unless it is marked as permanent. "
        "To restore a backup, open the Backups page, choose the date and press Restore. "
        "The restore replaces the current data, so export anything you still need first. "
        "Restores of large databases can take up to an hour, during which the site is read-only."
    )
    source = _sentences(doc)
    for window in (5, 12, 25, 40):
        text = ExtractiveGenerator(window_words=window).generate(_request("How do I restore a backup?", [doc])).text
        body = text.split("\n\n", 1)[1]
        quoted = _sentences(body)
        assert quoted, text
        assert all(s in source for s in quoted), (window, quoted)
        assert "To restore a backup, open the Backups page, choose the date and press Restore." in quoted


def test_a_list_keeps_its_items() -> None:
    doc = (
        "Before you upgrade, check the following:\n\n"
        "- the database has a recent backup\n"
        "- no import job is running\n"
        "- every node runs version 4.2 or later"
    )
    units = read_units(doc)
    assert [u.kind for u in units] == ["sentence", "item", "item", "item"]
    text = ExtractiveGenerator(window_words=6).generate(_request("What should I check before I upgrade?", [doc])).text
    assert "- the database has a recent backup\n- no import job is running\n- every node runs version 4.2 or later" in text


def test_a_list_item_keeps_the_code_blocks_indented_under_it() -> None:
    doc = (
        "1. Install from a file.\n   Unix:\n\n   ```\n   tool install -r deps.txt\n   ```\n"
        "   Windows:\n   ```\n   tool.exe install -r deps.txt\n   ```\n"
        "2. Upgrade one package.\n   ```\n   tool install --upgrade pkg\n   ```\n\nThat is all."
    )
    units = read_units(doc)
    assert [u.kind for u in units] == ["item", "item", "sentence"]
    assert units[0].text.endswith("   Windows:\n   ```\n   tool.exe install -r deps.txt\n   ```")
    text = ExtractiveGenerator(window_words=10).generate(_request("How do I upgrade one package?", [doc])).text
    assert "2. Upgrade one package.\n   ```\n   tool install --upgrade pkg\n   ```" in text


def test_one_quote_with_its_heading_path_and_one_citation() -> None:
    texts = [
        "To rotate an API key, open Settings > API and press Rotate. The old key stops working after an hour.",
        "API keys are listed on the Settings page with their creation date.",
        "Keys can be scoped to one project.",
    ]
    text = ExtractiveGenerator().generate(_request("How do I rotate an API key?", texts)).text
    assert text.startswith("From **D0 > Guide** [1]:")
    assert re.findall(r"\[\d+\]", text) == ["[1]"]
    assert "open Settings > API and press Rotate" in text


def test_a_question_in_two_parts_quotes_two_passages() -> None:
    texts = [
        "To export invoices, open Billing and press Export. The file is a CSV with one invoice a line.",
        "Invoices are numbered per year and never reused.",
        "The VAT number is printed on every invoice once it is entered under Company details.",
    ]
    text = ExtractiveGenerator().generate(
        _request("How do I export invoices, and where do I enter the VAT number?", texts)
    ).text
    assert "[1]" in text and "[3]" in text and "[2]" not in text


def test_bracketed_numbers_in_quoted_code_are_not_citations() -> None:
    checked = check_citations("Run it [1]:\n\n```\necho ${list[2]}\n```\n\nand `a[1]` too [2].", given=2)
    assert "${list[2]}" in checked.text and "`a[1]`" in checked.text
    assert checked.numbers == (1, 2)


# -- confidence wording ---------------------------------------------------------------------------
def test_a_middling_confidence_says_it_may_answer() -> None:
    assert hedge("From **A** [1]:\n\nText.", STATE_AT) == "From **A** [1]:\n\nText."
    hedged = hedge("From **A** [2]:\n\nText.", STATE_AT - 0.2)
    assert hedged.startswith("This may answer it — see [2].")


# -- loaders keep structure ----------------------------------------------------------------------
def _loaded(tmp_path: Path, name: str, text: str) -> Document:
    """The one document the loader makes of a file ``name`` holding ``text``."""
    path = tmp_path / name
    path.write_text(text)
    [doc] = load_file(path, source="kb", max_bytes=1 << 20)
    return doc


PAGE = """<!doctype html><html><head><title>Ignore files - Example Docs</title></head><body>
<nav>Home | Products | Login</nav>
<header><div class="logo">Example Corp</div></header>
<div class="cookie-banner">We use cookies to improve your experience.</div>
<aside class="sidebar"><ul><li>Related page one</li></ul></aside>
<main>
<h1>Ignore files</h1>
<p>To ignore build output, add a pattern to <code>.gitignore</code>, for example:</p>
<pre># Ignore objects and archives.
*.[oa]
build/
</pre>
<h2>Options</h2>
<ul><li>Patterns are matched relative to the file.</li><li>A leading <code>!</code> negates a pattern.</li></ul>
<table><tr><th>Pattern</th><th>Matches</th></tr><tr><td>*.o</td><td>object files</td></tr></table>
</main>
<footer>Copyright 2026 Example Corp. Privacy | Terms</footer>
</body></html>"""


def test_html_pre_hash_lines_are_code_not_headings_and_furniture_is_removed(tmp_path: Path) -> None:
    doc = _loaded(tmp_path, "ignore.html", PAGE)
    assert doc.title == "Ignore files"
    assert [s.heading_path for s in doc.sections] == [("Ignore files",), ("Ignore files", "Options")]
    body = doc.sections[0].text
    assert "for example:\n\n```\n# Ignore objects and archives.\n*.[oa]\nbuild/\n```" in body
    assert "`.gitignore`" in body
    options = doc.sections[1].text
    assert "- Patterns are matched relative to the file.\n- A leading `!` negates a pattern." in options
    assert "| Pattern | Matches |" in options and "| *.o | object files |" in options
    everything = "\n".join(s.text for s in doc.sections)
    for junk in ("Home | Products", "Login", "Example Corp", "cookies", "Related page", "Copyright", "Privacy"):
        assert junk not in everything


def test_html_without_main_still_loses_nav_header_and_footer(tmp_path: Path) -> None:
    doc = _loaded(
        tmp_path,
        "small.html",
        "<html><body><nav>Home | Products | Login</nav><header>Acme</header>"
        "<p>Reset your password from the login page.</p><footer>Acme 2026</footer></body></html>"
    )
    assert "\n".join(s.text for s in doc.sections) == "Reset your password from the login page."


FAQ_PAGE = """<html><head><title>Tool FAQ</title></head><body><main><h1>Tool FAQ</h1>
<table summary="Q and A">
<tr class="qandadiv"><td colspan="2"><h3>5. Suppressions</h3></td></tr>
<tr class="question"><td><b>5.1.</b></td><td><b>Can the tool write my suppressions for me?</b></td></tr>
<tr class="answer"><td></td><td><p>Yes! Use <code>--gen-suppressions=yes</code> and edit what it prints.</p>
<pre>tool --gen-suppressions=yes ./prog</pre></td></tr>
<tr class="question"><td><b>5.2.</b></td><td><b>Where do suppressions go?</b></td></tr>
<tr class="answer"><td></td><td><p>In a file.</p><p>Pass it with <code>--suppressions</code>.</p></td></tr>
</table></main></body></html>"""


def test_a_layout_table_reads_as_headings_and_paragraphs_not_one_grid(tmp_path: Path) -> None:
    doc = _loaded(tmp_path, "faq.html", FAQ_PAGE)
    # The heading in a cell is a heading; each question leads with its number; the code is code.
    assert [s.heading_path for s in doc.sections][-1] == ("Tool FAQ", "5. Suppressions")
    text = doc.sections[-1].text
    assert text.startswith("5.1. Can the tool write my suppressions for me?\n\nYes! Use `--gen-suppressions=yes`")
    assert "```\ntool --gen-suppressions=yes ./prog\n```" in text
    assert "5.2. Where do suppressions go?\n\nIn a file.\n\nPass it with `--suppressions`." in text
    assert "|" not in text


def test_a_plain_text_readme_in_html_keeps_its_tilde_underlines_out_of_code(tmp_path: Path) -> None:
    # valgrind's README.developers as HTML: lines of "~" under titles, in a paragraph with <br>.
    doc = _loaded(
        tmp_path,
        "readme.html",
        "<html><body><main><h1>Developers</h1><p>Building a tarball<br>~~~~~~~~~~~~~~~~~~<br>"
        "Run make dist.<br>```not a fence<br>Running the tests<br>~~~~~~~~~~~~~~~~~<br>Run make regtest.</p>"
        "</main></body></html>"
    )
    text = doc.sections[0].text
    assert "~~~" not in text and "Run make dist." in text and "Run make regtest." in text
    assert "\\```not a fence" in text
    assert [u.kind for u in read_units(text)] == ["sentence"] * len(read_units(text))  # nothing reads as code


def test_heading_permalinks_of_doc_generators_are_not_part_of_the_heading(tmp_path: Path) -> None:
    doc = _loaded(
        tmp_path,
        "install.html",
        '<html><body><div role="main"><h1>Install<a class="headerlink" href="#install">¶</a></h1>'
        '<p>Run the installer.</p><h2>Proxy<a href="#proxy" class="hash-link">\u200b</a></h2>'
        '<p>See <a href="#install">the install step</a> first.</p></div></body></html>'
    )
    assert doc.title == "Install"
    assert [s.heading_path for s in doc.sections] == [("Install",), ("Install", "Proxy")]
    assert doc.sections[1].text == "See the install step first."  # an in-page link with words stays


def test_line_number_gutters_of_highlighted_code_are_not_code(tmp_path: Path) -> None:
    doc = _loaded(
        tmp_path,
        "code.html",
        '<html><body><main><h1>Setup</h1><p>Run:</p><table class="highlighttable"><tr>'
        '<td class="linenos"><div class="linenodiv"><pre>1\n2</pre></div></td>'
        '<td class="code"><div class="highlight"><pre>tool init\ntool sync</pre></div></td></tr></table>'
        '<p>Or:</p><div class="highlight"><pre><span class="linenos">1</span>tool run</pre></div></main></body></html>'
    )
    assert doc.sections[0].text == "Run:\n\n```\ntool init\ntool sync\n```\n\nOr:\n\n```\ntool run\n```"


ASCIIDOC = """git-frob(1)
===========

NAME
----
git-frob - Frobnicate the current branch

OPTIONS
-------
-q::
--quiet::
\tBe quiet, only report errors. See linkgit:git-config[1].

EXAMPLES
--------
Frob the tip::
+
------------
$ git frob --tip   # a comment, not a heading
------------
"""


def test_asciidoc_text_reads_as_markdown(tmp_path: Path) -> None:
    doc = _loaded(tmp_path, "git-frob.txt", ASCIIDOC)
    paths = [s.heading_path for s in doc.sections]
    assert ("git-frob(1)", "OPTIONS") in paths and ("git-frob(1)", "EXAMPLES") in paths
    text = "\n".join(s.text for s in doc.sections)
    assert "- **-q, --quiet**: Be quiet, only report errors. See git-config(1)." in text
    assert "```\n$ git frob --tip   # a comment, not a heading\n```" in text
    assert "linkgit:" not in text and "------" not in text


# -- chunking ------------------------------------------------------------------------------------
def test_chunks_keep_a_code_block_whole_with_its_introduction() -> None:
    code = "```\n" + "\n".join(f"step {i} of the install\n" for i in range(8)) + "```"
    text = "The tool installs in three stages and needs no root access. " * 2 + "\n\nTo install, run:\n\n" + code + "\n\nDone."
    doc = Document("d", "s", "T", (Section(("Install",), text),), "u", "h")
    chunks = chunk_document(doc, size=30, overlap=8)
    holding = [c for c in chunks if "step 0" in c.text]
    assert len(holding) == 1
    assert "To install, run:\n\n" + code in holding[0].text
    assert all(c.text.count("```") % 2 == 0 for c in chunks)


# -- near-identical documents -------------------------------------------------------------------
def test_the_same_page_as_txt_and_html_is_cited_once(tmp_path: Path) -> None:
    from adapters.providers.local_index import LocalIndex
    from adapters.providers.onnx_embedder import OnnxEmbedder
    from bot.retrieval import Retriever

    body = (
        "Rotate the signing key every ninety days with the keys rotate command. "
        "The command creates a new key, publishes its public half to the directory service, "
        "and keeps the previous key valid for verification during a grace period of seven days. "
        "Tokens signed with the old key keep working until they expire. Clients fetch the "
        "published keys hourly, so plan rotations outside peak traffic and watch the error "
        "dashboard for signature failures after each rotation finishes."
    )
    (tmp_path / "keys.txt").write_text(f"Key rotation\n============\n\n{body}\n")
    (tmp_path / "keys.html").write_text(f"<html><body><h1>Key rotation</h1><p>{body}</p></body></html>")
    (tmp_path / "other.md").write_text("# Audit log\n\nThe audit log records every key rotation with its date.\n")
    embedder = OnnxEmbedder()
    index = LocalIndex(tmp_path / "index.sqlite")
    docs = [load_file(tmp_path / n, source="kb", root=tmp_path, max_bytes=1 << 20)[0] for n in ("keys.txt", "keys.html", "other.md")]
    assert same_document(
        chunk_document(docs[0], size=200, overlap=20)[0], chunk_document(docs[1], size=200, overlap=20)[0]
    )
    assert document_fingerprint(docs[0]) != "" and not same_document(
        chunk_document(docs[0], size=200, overlap=20)[0], chunk_document(docs[2], size=200, overlap=20)[0]
    )
    for doc in docs:
        chunks = chunk_document(doc, size=200, overlap=20)
        index.replace(doc.id, chunks, embedder.embed_documents([c.context + "\n" + c.text for c in chunks]))
    service = AnswerService(Retriever(embedder, index), ExtractiveGenerator(), None, policy=DeclinePolicy(threshold=0.0), k=4)  # answer: this test is about citing
    answer = service.answer(Question("How do I rotate the signing key?"))
    assert answer.decision == Decision.ANSWERED
    cited = [c.doc_id for c in (*answer.citations, *answer.see_also)]
    pair = [d for d in cited if d.endswith(("/keys.txt", "/keys.html"))]  # ids: source, location hash, name
    assert len(pair) == 1, cited


# -- renderers show a quoted code block as code ----------------------------------------------------
QUOTED = "From **Branches** [1]:\n\nInstead of basing it on HEAD, use:\n\n```\n# start from main\n- git switch -c topic main\n```\n\n- first item\n- second item"


def _answer(text: str) -> Answer:
    return Answer(id="a1", question=Question("q"), text=text, decision=Decision.ANSWERED, confidence=0.9)


def test_slack_renders_a_quoted_code_block_as_code() -> None:
    out = to_mrkdwn(QUOTED)
    assert "```\n# start from main\n- git switch -c topic main\n```" in out
    assert "• first item\n• second item" in out
    assert "*start from main*" not in out and "• git switch" not in out


def test_teams_renders_a_quoted_code_block_as_code() -> None:
    body = answer_card(_answer(QUOTED))["body"]
    code = [b for b in body if b["type"] == "CodeBlock"]
    assert [c["codeSnippet"] for c in code] == ["# start from main\n- git switch -c topic main"]
    texts = [b["text"] for b in body if b["type"] == "TextBlock"]
    assert texts[0].endswith("use:") and texts[1] == "- first item\n- second item"


def test_teams_shows_an_escaped_hash_as_written_but_not_inside_code() -> None:
    body = answer_card(_answer("\\# of seats is 50 [1]\n\n```\n\\#define SEATS 50\n```"))["body"]
    assert body[0]["text"] == "# of seats is 50 [1]"
    assert [b["codeSnippet"] for b in body if b["type"] == "CodeBlock"] == ["\\#define SEATS 50"]


def test_reference_recall_counts_the_reference_content_words_found() -> None:
    assert reference_recall("Press the Home button.", "Press the **Home** button [1].") == 1.0
    assert reference_recall("Press the Home button twice.", "Press Home.") == 0.5
    assert reference_recall("", "anything") == 0.0


def test_neighbouring_chunks_are_joined_without_repeating_their_overlap() -> None:
    first = "Stash your work before you switch. The stash keeps staged and unstaged changes of the"
    second = "staged and unstaged changes of the working tree until you apply it again with git stash pop."
    chunks = [
        Chunk(**{**make_chunk("s", doc="stash", ordinal=n, text=t).__dict__}) for n, t in enumerate([first, second])
    ]
    request = GenerationRequest(
        "How do I apply my stash again?", tuple(ScoredChunk(c, 1.0 - c.ordinal / 10, {"dense": 0.9}) for c in chunks)
    )
    text = ExtractiveGenerator().generate(request).text
    assert text.count("staged and unstaged changes of the") == 1
    assert "The stash keeps staged and unstaged changes of the working tree until you apply it again with git stash pop." in text


def test_the_auto_generator_uses_an_llm_only_when_an_openai_key_is_set(tmp_path: Path) -> None:
    from adapters.factory import build
    from adapters.settings import Settings

    offline = build(Settings(data_dir=tmp_path / "a", openai_api_key=None))  # type: ignore[call-arg]
    assert offline.settings.generator == "auto" and offline.generator_kind == "extractive"
    assert isinstance(offline.generator, ExtractiveGenerator)
    online = build(Settings(data_dir=tmp_path / "b", openai_api_key="sk-test", openai_base_url="http://127.0.0.1:9/v1"))  # type: ignore[call-arg]
    assert online.generator_kind == "openai" and online.generator.name != "extractive"
    pinned = build(Settings(data_dir=tmp_path / "c", openai_api_key="sk-test", generator="extractive"))  # type: ignore[call-arg]
    assert pinned.generator_kind == "extractive"


def test_see_also_is_listed_by_title_and_link_not_cited() -> None:
    from dataclasses import replace

    from adapters.slack.render import answer_blocks
    from bot.types import Citation

    other = Citation(1, "faq#0", "faq", "Reset FAQ", (), "https://docs.example.com/faq", None)
    answer = replace(_answer("From **Reset** [1]:\n\nHold the button."), see_also=(other,))
    slack = "\n".join(b["text"]["text"] for b in answer_blocks(answer) if b["type"] == "section")
    assert "*See also*\n• <https://docs.example.com/faq|Reset FAQ>" in slack
    card = answer_card(answer)["body"]
    texts = [b.get("text", "") for b in card]
    assert "See also" in texts and "- [Reset FAQ](https://docs.example.com/faq) (docs.example.com)" in texts


def test_eval_answers_writes_one_line_per_query_with_its_reply(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from adapters.cli import app

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Pairing", "text": "To pair the remote, hold Back and Play for 3 seconds."})
        + "\n"
        + json.dumps({"_id": "d2", "title": "Refunds", "text": "Refunds reach the original card within 5 business days."})
    )
    (beir / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "How do I pair the remote?", "answer": "Hold Back and Play for 3 seconds."})
        + "\n"
        + json.dumps({"_id": "q2", "text": "What is the capital of Peru?"})
    )
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    out = tmp_path / "answers.jsonl"
    result = CliRunner().invoke(
        app, ["eval", "answers", str(beir), "--json", "--answers-out", str(out)], env={"SUPPORTBOT_DATA_DIR": str(tmp_path / "d")}
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["reference_recall"] == 1.0 and figures["median_words"] > 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["q1", "q2"]
    assert set(lines[0]) == {"id", "question", "decision", "text", "confidence", "citations", "see_also"}
    assert lines[0]["decision"] == "answered" and lines[0]["citations"][0] == {"number": 1, "doc_id": "d1", "chunk_id": "d1#0"}
    assert lines[1]["decision"] == "declined" and lines[1]["citations"] == []
