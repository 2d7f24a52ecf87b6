"""The offline default generator: it quotes, it does not compose.

It picks the passage that best answers the question (or two, when one passage leaves a
good part of the question uncovered and another covers it) and quotes **one contiguous
window** of it — whole sentences, whole list items, whole code blocks and tables — around
the units that match the question, under the passage's heading path, with one citation.
It cannot state anything the passages do not say, takes milliseconds and needs no model.

Structure is kept: a passage is read as Markdown blocks (fenced code, list items, table
rows, paragraphs split into sentences). An introduction — any unit ending in ``:``
("use:", "run:", "for example:") — is never separated from the code block or list after
it, and a list is quoted with its items. Neighbouring chunks of the same document among
the passages are joined (their overlap removed) so the window can run across a chunk
boundary.

Units are scored by the question's content words they contain, weighted by rarity across
the candidate units (the passage's title and heading path count at ``context_weight``);
a passage's score is the rarity-weighted share of the question its best window covers,
discounted by its retrieval rank. When the question asks for a kind of answer (a price, a
number, …; bot/answertype.py) a unit holding one is preferred. Parameters were chosen
leave-one-set-out; the figures are in docs/answers.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from bot.answertype import expected_type, has_type
from bot.fingerprint import same_document
from bot.ports import ChunkLookup, Generation, GenerationRequest
from bot.rewrite import standalone_query
from bot.text import content_words
from bot.types import Chunk, ScoredChunk

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n{1,}")
_STEM = re.compile(r"(ing|ed|es|s)$")
_FENCE = re.compile(r"^\s*(```+|~~~+)")
_ITEM = re.compile(r"^(\s*)([-*+]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^#{1,6}\s+")
# Sentence ends inside a paragraph: after . ! ? before a capital, digit, quote or bracket.
_IN_PARAGRAPH = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[`*]?[A-Z0-9])")
# Abbreviations after which a full stop does not end the sentence.
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|resp|Fig|No|Mr|Mrs|Dr|St)\.|\b[A-Z]\.)$")
_CODE_SPAN = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)
_BRACKET_NUMBER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")

NAME = "extractive"


def stem(word: str) -> str:
    """A light stem so "pairs", "paired" and "pairing" meet "pair", and "policies" meets "policy"."""
    if len(word) <= 4:
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    return _STEM.sub("", word)


def split_sentences(text: str) -> list[str]:
    """Sentences and lines of ``text`` (a line break always ends one)."""
    parts = [p.strip() for p in _SENTENCE.split(text)]
    return [p for p in parts if len(p) > 2]


# -- reading a passage as blocks ------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A piece of a passage that is quoted whole or not at all.

    ``kind``: ``sentence``, ``item`` (a list item with its continuation lines), ``code`` (a
    fenced block, fences included), ``table`` (consecutive ``|`` rows) or ``heading``.
    ``sep`` joins it to the unit before it in a quote: ``" "`` inside a paragraph, ``"\\n"``
    between list items or lines, ``"\\n\\n"`` between blocks. ``block`` numbers the block
    (paragraph, list, code, table) it belongs to.
    """

    text: str
    kind: str
    sep: str
    block: int

    @property
    def introduces(self) -> bool:
        """An introduction ("use:", "for example:") belongs with what follows it."""
        return self.kind in ("sentence", "item") and self.text.rstrip().rstrip("*_").endswith(":")

    @property
    def words(self) -> int:
        return len(self.text.split())


def _sentences_of(paragraph: str) -> list[str]:
    """Split a paragraph into sentences, never inside inline code or after an abbreviation."""
    protected = _CODE_SPAN.sub(lambda m: m[0].replace(".", "\x00").replace("!", "\x01").replace("?", "\x02"), paragraph)
    out: list[str] = []
    start = 0
    for match in _IN_PARAGRAPH.finditer(protected):
        if _ABBREVIATION.search(protected[start : match.start()]):
            continue
        out.append(protected[start : match.start()])
        start = match.end()
    out.append(protected[start:])
    return [s.replace("\x00", ".").replace("\x01", "!").replace("\x02", "?").strip() for s in out if s.strip()]


def read_units(text: str) -> list[Unit]:
    """``text`` (Markdown or plain) as quotable units, in order."""
    units: list[Unit] = []
    lines = text.split("\n")
    block = 0
    i = 0
    paragraph: list[str] = []

    def flush() -> None:
        nonlocal block
        if not paragraph:
            return
        for n, line in enumerate(_paragraph_lines(paragraph)):
            for m, sentence in enumerate(_sentences_of(line)):
                sep = " " if m else ("\n" if n else "\n\n")
                units.append(Unit(sentence, "sentence", sep, block))
        paragraph.clear()
        block += 1

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(1)[:3]
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(marker):
                j += 1
            code = "\n".join(lines[i : min(j + 1, len(lines))])
            if j >= len(lines):
                code += "\n" + marker  # an unclosed fence (a chunk boundary) is closed for display
            units.append(Unit(code, "code", "\n\n", block))
            block += 1
            i = j + 1
            continue
        if not stripped:
            flush()
            i += 1
            continue
        if stripped.startswith("|"):
            flush()
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            units.append(Unit("\n".join(lines[i:j]), "table", "\n\n", block))
            block += 1
            i = j
            continue
        if _HEADING.match(line):
            flush()
            units.append(Unit(stripped, "heading", "\n\n", block))
            block += 1
            i += 1
            continue
        item = _ITEM.match(line)
        if item:
            flush()
            indent = len(item.group(1))
            j = i + 1
            body = [line.rstrip()]
            while j < len(lines):
                nxt = lines[j]
                deeper = _indent_of(nxt) > indent
                if deeper and (inner := _FENCE.match(nxt)):
                    # A code block inside the item ("Unix:" and its command): part of the item.
                    marker = inner.group(1)[:3]
                    end = next((k for k in range(j + 1, len(lines)) if lines[k].strip().startswith(marker)), None)
                    stop = len(lines) if end is None else end + 1
                    body.extend(line.rstrip() for line in lines[j:stop])
                    if end is None:
                        body.append(" " * _indent_of(nxt) + marker)  # cut by a chunk boundary
                    j = stop
                    continue
                if not nxt.strip():
                    # A blank line inside an item: the item goes on when what follows is indented under it.
                    ahead = next((k for k in range(j + 1, len(lines)) if lines[k].strip()), None)
                    follow = lines[ahead] if ahead is not None else ""
                    if ahead is not None and _indent_of(follow) > indent and not _ITEM.match(follow):
                        body.append("")
                        j += 1
                        continue
                    break
                if _ITEM.match(nxt) or _FENCE.match(nxt) or nxt.strip().startswith("|"):
                    break
                if not deeper and _HEADING.match(nxt):
                    break
                body.append(nxt.rstrip())
                j += 1
            # Items of one list share a block; a blank line between items does not end the list.
            same_list = bool(units) and units[-1].kind == "item" and units[-1].block == block - 1
            if same_list:
                block -= 1
            units.append(Unit("\n".join(body), "item", "\n" if same_list else "\n\n", block))
            block += 1
            i = j
            continue
        paragraph.append(line)
        i += 1
    flush()
    return units


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _paragraph_lines(lines: list[str]) -> list[str]:
    """The lines of a paragraph, hard-wrapped lines joined (a sentence is not cut by a wrap).

    A line that ends a sentence (or an introduction) and is followed by a capitalised line is
    kept as its own line: plain-text documents put one statement a line.
    """
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        if out and not re.search(r"[.!?:;]['\")\]]?$", out[-1]) and not line[:1].isupper() or out and not re.search(r"[.!?:;]['\")\]]?$", out[-1]) and len(out[-1]) >= 60:
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
    return out


def _join(units: Sequence[Unit]) -> str:
    text = ""
    for n, u in enumerate(units):
        if n == 0:
            text = u.text
        elif u.block != units[n - 1].block:
            text += "\n\n" + u.text
        else:
            text += (" " if u.sep == " " else "\n") + u.text
    return text


# -- joining neighbouring chunks -----------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """A passage to quote from: the chunk it was found as (``number``, 1-based) and its units,
    extended with the units of neighbouring chunks of the same document that were also found."""

    number: int
    hit: ScoredChunk
    units: tuple[Unit, ...]
    origin: tuple[int, ...]  # the 1-based numbers of the passages joined into it (0: looked up)


def _neighbourhood(passages: Sequence[ScoredChunk], at: int, extra: Mapping[str, Chunk]) -> Passage:
    """Passage ``at`` joined with the consecutive chunks of its document beside it: those found
    among the passages, and those in ``extra`` (looked up by id); same heading path only."""
    hit = passages[at]
    doc = hit.chunk.doc_id
    by_ordinal: dict[int, tuple[Chunk, int]] = {
        c.ordinal: (c, hit_number)
        for c, hit_number in [(c, 0) for c in extra.values() if c.doc_id == doc]
        + [(p.chunk, n + 1) for n, p in enumerate(passages) if p.chunk.doc_id == doc]
    }
    lo = hi = hit.chunk.ordinal
    while lo - 1 in by_ordinal and by_ordinal[lo - 1][0].heading_path == hit.chunk.heading_path:
        lo -= 1
    while hi + 1 in by_ordinal and by_ordinal[hi + 1][0].heading_path == hit.chunk.heading_path:
        hi += 1
    text = ""
    numbers: list[int] = []
    for ordinal in range(lo, hi + 1):
        chunk, number = by_ordinal[ordinal]
        numbers.append(number)
        if not text:
            text = chunk.text
            continue
        # Consecutive chunks share an overlap (whole sentences or a run of words): drop it, and
        # continue a sentence the boundary cut on the same line.
        rest = _without_overlap(text, chunk.text)
        cut = not _ENDS.search(text) and rest[:1].islower()
        text = f"{text}{' ' if cut else chr(10) * 2}{rest}"
    units = read_units(text)
    if lo > 0 and len(units) > 1 and _starts_mid_sentence(units[0]):
        units = units[1:]  # the tail of a sentence cut by the chunk before, which is not here
    return Passage(at + 1, hit, tuple(units), tuple(numbers))


_ENDS = re.compile(r"[.!?:;)\]\"'`*]\s*$")
_WORD_SPAN = re.compile(r"\S+")


def _starts_mid_sentence(unit: Unit) -> bool:
    return unit.kind == "sentence" and unit.text[:1].islower()


def _without_overlap(previous: str, text: str, limit: int = 80) -> str:
    """``text`` without its first words when they repeat the last words of ``previous``."""
    before = previous.split()[-limit:]
    spans = list(_WORD_SPAN.finditer(text))[:limit]
    after = [m.group(0) for m in spans]
    for k in range(min(len(before), len(after)), 2, -1):
        if before[-k:] == after[:k]:
            return text[spans[k - 1].end() :].lstrip()
    return text


def _neighbour_ids(passages: Sequence[ScoredChunk], reach: int) -> list[str]:
    """Ids of the chunks up to ``reach`` before and after each passage, not among the passages."""
    have = {p.chunk.id for p in passages}
    ids = [
        f"{p.chunk.doc_id}#{p.chunk.ordinal + d}"
        for p in passages
        for d in (*range(-reach, 0), *range(1, reach + 1))
        if p.chunk.ordinal + d >= 0
    ]
    return [i for i in dict.fromkeys(ids) if i not in have]


# -- scoring and windows -------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    passage: Passage
    start: int
    end: int  # exclusive
    covered: frozenset[str]
    score: float

    @property
    def units(self) -> tuple[Unit, ...]:
        return self.passage.units[self.start : self.end]

    @property
    def text(self) -> str:
        return _join(self.units)


def _terms(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)}


class ExtractiveGenerator:
    """Generator protocol: quotes one contiguous window of the best passage (or two), each cited [n]."""

    name = NAME

    def __init__(
        self,
        max_passages: int = 5,
        window_words: int = 110,
        rank_decay: float = 1.0,
        context_weight: float = 0.5,
        type_boost: float = 1.0,
        second_share: float = 0.4,
        question_weight: float = 0.5,
        score_weight: float = 0.0,
        lookup: ChunkLookup | None = None,
        reach: int = 2,
    ) -> None:
        self.lookup = lookup  # the index, to read past a chunk boundary (bot.ports.ChunkLookup)
        self.reach = reach  # how many chunks before and after a passage may be read
        self.max_passages = max_passages  # candidates to quote from, in retrieval order
        self.window_words = window_words  # a quote grows around its best unit up to this many words
        self.rank_decay = rank_decay  # a lower-ranked passage's score is divided by (1 + decay * rank)
        self.context_weight = context_weight  # question words in the title / heading path count this much
        self.type_boost = type_boost  # extra weight for a unit holding the asked-for kind of answer
        # A second passage is quoted when the first leaves at least this rarity-weighted share of
        # the question uncovered and the second covers more of it than the first.
        self.second_share = second_share
        self.question_weight = question_weight  # a unit that is itself a question (an FAQ title) counts less
        # The retrieval score's say in which passage to quote: a passage's coverage is multiplied
        # by (its retrieval score / the best one's) ** score_weight.
        self.score_weight = score_weight

    # -- the protocol --------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> Generation:
        quotes = self.select(request)
        if not quotes:
            return Generation("", not_found=True, model=NAME)
        return Generation(render_quotes(quotes), model=NAME)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        text = self.generate(request).text
        if text:
            yield text

    # -- choosing what to quote ----------------------------------------------------------------
    def select(self, request: GenerationRequest) -> list[Quote]:
        """The quotes to give, best first (empty when no passage shares a word with the question)."""
        question = standalone_query(request.question, request.history)
        asked = _terms(question)
        passages = list(request.passages[: self.max_passages])
        if not asked or not passages:
            return []
        # A near-identical copy of a passage's document (the same page as .txt and .html) is
        # not a second source: only the first one found is quoted from.
        keep = [
            n
            for n, p in enumerate(passages)
            if not any(
                passages[m].chunk.doc_id != p.chunk.doc_id and same_document(passages[m].chunk, p.chunk)
                for m in range(n)
            )
        ]
        extra: dict[str, Chunk] = {}
        if self.lookup is not None and self.reach > 0:
            # Only chunks as visible as the passage they extend (a document's chunks share its access).
            access = {p.chunk.doc_id: p.chunk.access for p in passages}
            for c in self.lookup.chunks(_neighbour_ids([passages[n] for n in keep], self.reach)):
                if access.get(c.doc_id) == c.access:
                    extra[c.id] = c
        candidates = [_neighbourhood(passages, n, extra) for n in keep]
        unit_terms = [[_terms(u.text) for u in p.units] for p in candidates]
        n_units = sum(len(t) for t in unit_terms) or 1
        df = {t: sum(1 for ts in unit_terms for s in ts if t in s) for t in asked}
        idf = {t: math.log(1 + n_units / (1 + df[t])) + (0.5 if df[t] else 0.0) for t in asked}
        kind = expected_type(request.question)
        quotes: list[Quote] = []
        top = max((p.hit.score for p in candidates), default=0.0)
        for rank, (p, terms) in enumerate(zip(candidates, unit_terms, strict=True)):
            quote = self._best_window(p, terms, asked, idf, kind, request.question)
            if quote is not None:
                prior = 1 / (1 + self.rank_decay * rank)
                if self.score_weight and top > 0:
                    prior *= (max(p.hit.score, 0.0) / top) ** self.score_weight
                quotes.append(Quote(quote.passage, quote.start, quote.end, quote.covered, quote.score * prior))
        quotes = [q for q in quotes if q.score > 0]
        if not quotes:
            return []
        quotes.sort(key=lambda q: -q.score)
        first = quotes[0]
        chosen = [first]
        total = sum(idf.values()) or 1.0
        left = asked - first.covered
        if sum(idf[t] for t in left) / total >= self.second_share:
            for q in quotes[1:]:
                if same_document(q.passage.hit.chunk, first.passage.hit.chunk):
                    continue  # one quote a document: a second part answered on the same page is rare
                gain = sum(idf[t] for t in left & q.covered)
                if gain / total >= self.second_share / 2 and gain > sum(idf[t] for t in left & first.covered):
                    chosen.append(q)
                    break
        return chosen

    def _unit_score(
        self, unit: Unit, terms: set[str], idf: dict[str, float], kind: object, question: str
    ) -> float:
        score = sum(idf[t] for t in terms & idf.keys())
        if unit.kind == "sentence" and unit.text.rstrip().endswith("?"):
            score *= self.question_weight
        if score and kind is not None and self.type_boost and has_type(unit.text, kind, question):  # type: ignore[arg-type]
            score *= 1.0 + self.type_boost
        return score

    def _best_window(
        self,
        passage: Passage,
        unit_terms: list[set[str]],
        asked: set[str],
        idf: dict[str, float],
        kind: object,
        question: str,
    ) -> Quote | None:
        units = passage.units
        if not units:
            return None
        scores = [self._unit_score(u, t, idf, kind, question) for u, t in zip(units, unit_terms, strict=True)]
        best = max(range(len(units)), key=lambda i: (scores[i], -i))
        if scores[best] <= 0:
            return None
        start, end = self._closure(units, best, best + 1)
        budget = self.window_words
        while True:
            words = sum(u.words for u in units[start:end])
            options = []
            if start > 0:
                s, e = self._closure(units, start - 1, end)
                options.append((scores[start - 1], -1, s, e))
            if end < len(units):
                s, e = self._closure(units, start, end + 1)
                options.append((scores[end], 1, s, e))
            options = [o for o in options if sum(u.words for u in units[o[2] : o[3]]) <= budget]
            if not options or words >= budget:
                break
            # The better-matching neighbour first; on a tie the text after (it explains).
            _, _, start, end = max(options, key=lambda o: (o[0], o[1]))
        covered: set[str] = set()
        for t in unit_terms[start:end]:
            covered |= t & asked
        context = _terms(passage.hit.chunk.context) & asked
        total = sum(idf.values()) or 1.0
        score = (
            sum(idf[t] for t in covered) + self.context_weight * sum(idf[t] for t in context - covered)
        ) / total
        # Where the best-matching unit holds the asked-for kind of answer, prefer this passage.
        if kind is not None and self.type_boost and any(
            has_type(u.text, kind, question) for u in units[start:end]  # type: ignore[arg-type]
        ):
            score *= 1.0 + 0.25 * self.type_boost
        return Quote(passage, start, end, frozenset(covered | context), score)

    @staticmethod
    def _closure(units: Sequence[Unit], start: int, end: int) -> tuple[int, int]:
        """Widen [start, end) so no introduction is cut from what it introduces, and a list,
        once entered through its introduction, is quoted with all its items."""
        changed = True
        while changed:
            changed = False
            # Something quoted whose introduction precedes it: take the introduction.
            if start > 0 and units[start - 1].introduces and units[start].kind in ("code", "item", "table"):
                start -= 1
                changed = True
            if start > 0 and units[start - 1].introduces and units[start].block != units[start - 1].block:
                start -= 1
                changed = True
            # An introduction at the end: take what it introduces.
            if end < len(units) and units[end - 1].introduces:
                end += 1
                changed = True
            # A list introduced inside the window: keep all its items.
            if (
                end < len(units)
                and units[end].kind == "item"
                and units[end - 1].kind == "item"
                and units[end].block == units[end - 1].block
                and any(u.introduces for u in units[start:end])
            ):
                end += 1
                changed = True
        return start, end


def _escape_numbers(text: str) -> str:
    """Bracketed numbers in quoted prose ("see [2]") would read as citations: make them (2)."""
    parts = _CODE_SPAN.split(text)
    return "".join(p if i % 2 else _BRACKET_NUMBER.sub(r"(\1)", p) for i, p in enumerate(parts))


def render_quotes(quotes: Sequence[Quote]) -> str:
    """Each quote under its title and heading path, cited once: ``From **T > H** [n]:``
    (a passage with neither is cited at the end of its quote)."""
    out: list[str] = []
    for q in quotes:
        chunk = q.passage.hit.chunk
        where = chunk.context
        body = _escape_numbers(q.text)
        if where:
            out.append(f"From **{_escape_numbers(where)}** [{q.passage.number}]:\n\n{body}")
        elif q.units[-1].kind == "sentence":
            out.append(f"{body} [{q.passage.number}]")
        else:  # after a code block, a list or a table the citation gets its own line
            out.append(f"{body}\n\n[{q.passage.number}]")
    return "\n\n".join(out)
