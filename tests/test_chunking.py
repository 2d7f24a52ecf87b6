"""The chunker: structure, sizes, overlap, tiny-section folding, metadata and invariants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.types import Document, Section
from knowledge.chunking import chunk_document

WHEN = datetime(2024, 5, 1, tzinfo=UTC)


def doc(*sections: tuple[tuple[str, ...], str]) -> Document:
    return Document(
        id="kb:guide.md",
        source="kb",
        title="Guide",
        sections=tuple(Section(path, text) for path, text in sections),
        url="file:///guide.md",
        content_hash="abc",
        updated_at=WHEN,
        access=("staff",),
    )


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def sentences(n: int, tag: str = "s") -> list[str]:
    """n sentences of 5 words each, each word unique."""
    return [f"{tag}{i} has four more words." for i in range(n)]


def count(text: str) -> int:
    return len(text.split())


def test_empty_document_gives_no_chunks() -> None:
    assert chunk_document(doc(), size=50, overlap=10) == []
    assert chunk_document(doc(((), "  \n\n ")), size=50, overlap=10) == []


def test_rejects_overlap_not_smaller_than_size() -> None:
    with pytest.raises(ValueError):
        chunk_document(doc(((), "x")), size=10, overlap=10)


def test_metadata_ids_and_no_heading_in_text() -> None:
    d = doc((("Billing",), "Pay monthly."), (("Billing", "Refunds"), words(30)))
    chunks = chunk_document(d, size=20, overlap=5)
    assert [c.id for c in chunks] == [f"kb:guide.md#{i}" for i in range(len(chunks))]
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    first = chunks[0]
    assert (first.doc_id, first.title, first.url, first.source) == ("kb:guide.md", "Guide", d.url, "kb")
    assert (first.content_hash, first.updated_at, first.access) == ("abc", WHEN, ("staff",))
    assert first.text == "Pay monthly."
    assert first.context == "Guide > Billing"
    assert all(c.heading_path == ("Billing", "Refunds") for c in chunks[1:])
    assert not any("Guide" in c.text or "Refunds" in c.text for c in chunks)


def test_whole_paragraphs_are_packed_and_sections_never_mixed() -> None:
    paragraphs = [words(8, f"p{i}_") for i in range(5)]
    d = doc((("A",), "\n\n".join(paragraphs)), (("B",), "The other section is here."))
    chunks = chunk_document(d, size=20, overlap=0)
    assert [c.text for c in chunks] == [
        "\n\n".join(paragraphs[0:2]),
        "\n\n".join(paragraphs[2:4]),
        paragraphs[4],
        "The other section is here.",
    ]
    assert [c.heading_path for c in chunks] == [("A",), ("A",), ("A",), ("B",)]


def test_long_paragraph_splits_at_sentences_with_sentence_overlap() -> None:
    text = " ".join(sentences(12))  # 60 words in one paragraph
    chunks = chunk_document(doc(((), text)), size=20, overlap=10)
    assert all(count(c.text) <= 20 for c in chunks)
    for c in chunks:  # every chunk starts and ends on a sentence boundary
        assert c.text.startswith("s") and c.text.endswith("words.")
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        # the next chunk opens with the last two whole sentences of the one before
        shared = " ".join(prev.text.split()[-10:])
        assert nxt.text.startswith(shared)
    assert chunks[-1].text.endswith("s11 has four more words.")


def test_sentence_longer_than_a_chunk_splits_at_words_with_exact_overlap() -> None:
    text = words(100)  # no punctuation at all
    chunks = chunk_document(doc(((), text)), size=30, overlap=10)
    assert all(count(c.text) <= 30 for c in chunks)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert prev.text.split()[-10:] == nxt.text.split()[:10]
    assert chunks[0].text.split()[0] == "w0" and chunks[-1].text.split()[-1] == "w99"


def test_overlap_crosses_paragraph_breaks_within_a_section() -> None:
    first, second = " ".join(sentences(3, "a")), " ".join(sentences(3, "b"))  # 15 words each
    chunks = chunk_document(doc(((), f"{first}\n\n{second}")), size=20, overlap=5)
    assert [c.text for c in chunks] == [first, f"a2 has four more words.\n\n{second}"]


def _fences(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.strip().startswith("```"))


def test_a_long_list_with_code_in_its_items_is_cut_between_code_blocks_never_inside() -> None:
    # A Sphinx example list: numbered items, each with an indented code block, no blank lines.
    items = [
        f"{n}. Example {n} {words(5 + n, f'd{n}_')}.\n   Unix/macOS\n   ```\n   tool run {words(8 + 2 * n, f'c{n}_')}"
        f"\n   ```\n   Windows\n   ```\n   tool.exe run {words(6, f'w{n}_')}\n   ```"
        for n in range(1, 9)
    ]
    chunks = chunk_document(doc((("Examples",), "\n".join(items))), size=60, overlap=15)
    assert len(chunks) > 1
    for c in chunks:
        assert _fences(c.text) % 2 == 0, c.text  # every piece opens and closes its code blocks
    joined = "\n".join(c.text for c in chunks)
    for n in range(1, 9):
        assert f"   tool run {words(8 + 2 * n, f'c{n}_')}\n" in joined  # no command lost, cut or unindented


def test_tiny_trailing_section_folds_into_previous_chunk_with_its_heading() -> None:
    d = doc(
        (("Billing", "Refunds"), words(40)),
        (("Billing", "Contact"), "Mail billing@example.com."),
    )
    chunks = chunk_document(d, size=80, overlap=10)
    assert len(chunks) == 1
    assert chunks[0].heading_path == ("Billing", "Refunds")
    assert chunks[0].text.endswith("\n\nContact\n\nMail billing@example.com.")


def test_tiny_section_stays_apart_when_parent_differs_or_it_does_not_fit() -> None:
    other_parent = doc((("Billing", "Refunds"), words(40)), (("Security", "Keys"), "Rotate keys."))
    assert len(chunk_document(other_parent, size=80, overlap=10)) == 2
    full = doc((("Billing", "Refunds"), words(78)), (("Billing", "Contact"), "Mail us now."))
    assert [c.heading_path for c in chunk_document(full, size=80, overlap=10)] == [
        ("Billing", "Refunds"),
        ("Billing", "Contact"),
    ]
    big_enough = doc((("Billing", "Refunds"), words(40)), (("Billing", "Contact"), words(12)))
    assert len(chunk_document(big_enough, size=80, overlap=10)) == 2


def test_section_under_its_parent_intro_folds_too() -> None:
    d = doc((("Billing",), words(30)), (("Billing", "Note"), "Prices exclude VAT."))
    [chunk] = chunk_document(d, size=60, overlap=5)
    assert chunk.heading_path == ("Billing",)
    assert chunk.text.endswith("Note\n\nPrices exclude VAT.")


_WORD = st.text("abcdefghij", min_size=1, max_size=6)
# Some "sentences" have no full stop, and some are longer than a chunk.
_SENTENCE = st.tuples(st.lists(_WORD, min_size=1, max_size=40), st.sampled_from([".", "!", ""])).map(
    lambda s: " ".join(s[0]) + s[1]
)
_PARAGRAPH = st.lists(_SENTENCE, min_size=1, max_size=8).map(" ".join)
_SECTION = st.tuples(
    st.lists(st.sampled_from(["A", "B", "C"]), max_size=3).map(tuple),
    st.lists(_PARAGRAPH, min_size=1, max_size=5).map("\n\n".join),
)


@settings(max_examples=80, deadline=None)
@given(sections=st.lists(_SECTION, max_size=5), size=st.integers(5, 60), overlap_part=st.floats(0, 0.9))
def test_invariants(sections: list[tuple[tuple[str, ...], str]], size: int, overlap_part: float) -> None:
    overlap = min(int(size * overlap_part), size - 1)
    d = doc(*sections)
    chunks = chunk_document(d, size=size, overlap=overlap)
    assert chunks == chunk_document(d, size=size, overlap=overlap)  # deterministic
    assert [c.id for c in chunks] == [f"{d.id}#{i}" for i in range(len(chunks))]
    assert all(0 < count(c.text) <= size for c in chunks)
    # No word is lost and the order is kept: the document's words are a subsequence of
    # the chunks' words (overlap and folded headings only add).
    stream = iter(w for c in chunks for w in c.text.split())
    assert all(any(w == x for x in stream) for s in d.sections for w in s.text.split())
