"""One reusable contract-test class per Protocol in bot/ports.py.

Subclass with a fixture that builds the implementation — or, where one file tests them all,
a fixture parametrised over the implementations (tests/test_contracts.py) — the offline ones
always, the cloud ones against their fake server, the wrappers the question path uses
(adapters/resilience.py) around a real one:

- ``EmbedderContract``: fixture ``embedder``
- ``ChunkIndexContract``: fixtures ``index`` (empty) and ``embedder`` (any Embedder)
- ``ChunkLookupContract`` and ``CandidateScorerContract``: the same fixtures (an index that has
  the capability)
- ``RerankerContract``: fixture ``reranker``
- ``GeneratorContract``: fixture ``generator`` (one that can answer from the passages)
- ``QueryRewriterContract``: fixture ``rewriter``
- ``AnswerStoreContract``: fixture ``answer_store`` (empty)
- ``DocumentStoreContract``: fixture ``document_store`` (empty)
- ``SyncStateStoreContract``: fixtures ``sync_store`` (empty) and ``source_id`` (a source it knows)
- ``VerifiedStoreContract``: fixtures ``verified_store`` (empty) and ``answer_store`` (the same database)
- ``IngestQueueContract``: fixtures ``ingest_queue`` (with a worker running), ``ingest_target``
  (something it can ingest), ``sync_source`` (a registered source) and ``bad_target``
- ``IngestContract``: fixtures ``ingest`` and ``index`` (the index it writes to)
- ``ConnectorContract``: fixtures ``connector`` and ``expected_items`` (external id -> title)
- ``RateLimiterContract``: fixture ``limiter``
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot.errors import ProviderRejected, RateLimited
from bot.ports import (
    AnswerStore,
    CandidateScorer,
    ChunkIndex,
    ChunkLookup,
    Connector,
    DocumentState,
    DocumentStore,
    Embedder,
    Generation,
    GenerationRequest,
    Generator,
    Ingest,
    IngestQueue,
    JobStatus,
    QueryRewriter,
    RateLimiter,
    Reranker,
    SourceDocument,
    SyncStateStore,
    VerifiedStore,
)
from bot.ratelimit import Limit
from bot.types import (
    PUBLIC,
    UNRESTRICTED,
    Answer,
    Chunk,
    Citation,
    Decision,
    Document,
    Feedback,
    Platform,
    Question,
    ScoredChunk,
    SearchFilters,
    Section,
    Trace,
    Turn,
    Vote,
)
from bot.verified import VerifiedAnswer

TEXTS = {
    "remote": "To pair the Smart Remote, press and hold the Back and Play buttons for three seconds.",
    "refund": "Enterprise customers can request a refund within 30 days from the billing page.",
    "wifi": "If the TV cannot connect to Wi-Fi, restart the router and check the network password.",
    "secret": "The staff-only escalation phone number for outages is kept in the on-call runbook.",
}


def make_chunk(key: str, *, doc: str | None = None, ordinal: int = 0, access: tuple[str, ...] = (PUBLIC,),
               source: str = "docs", updated: datetime | None = None, text: str | None = None) -> Chunk:
    doc_id = doc or key
    return Chunk(
        id=f"{doc_id}#{ordinal}",
        doc_id=doc_id,
        ordinal=ordinal,
        text=text if text is not None else TEXTS[key],
        title=key.title(),
        heading_path=("Guide", key.title()),
        url=f"https://docs.example.com/{doc_id}",
        source=source,
        content_hash="h-" + doc_id,
        updated_at=updated or datetime(2026, 1, 1, tzinfo=UTC),
        access=access,
    )


class EmbedderContract:
    def test_is_an_embedder(self, embedder: Embedder) -> None:
        assert isinstance(embedder, Embedder)
        assert embedder.name

    def test_shapes_and_normalisation(self, embedder: Embedder) -> None:
        m = embedder.embed_documents([TEXTS["remote"], TEXTS["refund"]])
        assert m.shape == (2, embedder.dimension)
        assert m.dtype == np.float32
        assert np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-3)
        q = embedder.embed_query("how do I pair the remote")
        assert q.shape == (embedder.dimension,)

    def test_empty_input(self, embedder: Embedder) -> None:
        assert embedder.embed_documents([]).shape == (0, embedder.dimension)

    def test_deterministic(self, embedder: Embedder) -> None:
        a = embedder.embed_documents([TEXTS["wifi"]])
        b = embedder.embed_documents([TEXTS["wifi"]])
        assert np.allclose(a, b, atol=1e-5)

    def test_prepare_is_idempotent_and_changes_no_vector(self, embedder: Embedder) -> None:
        before = embedder.embed_query("pair the remote")
        embedder.prepare()
        embedder.prepare()
        assert np.allclose(embedder.embed_query("pair the remote"), before, atol=1e-5)


class ChunkIndexContract:
    def _fill(self, index: ChunkIndex, embedder: Embedder) -> None:
        chunks = [
            make_chunk("remote"),
            make_chunk("refund", source="billing"),
            make_chunk("wifi", updated=datetime(2025, 1, 1, tzinfo=UTC)),
            make_chunk("secret", access=("staff",)),
        ]
        for c in chunks:
            index.replace(c.doc_id, [c], embedder.embed_documents([c.text]))

    def test_is_an_index(self, index: ChunkIndex) -> None:
        assert isinstance(index, ChunkIndex)

    def test_dense_finds_the_right_chunk(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        hits = index.dense_search(embedder.embed_query("pair the smart remote"), 2, UNRESTRICTED)
        assert hits[0].chunk.doc_id == "remote"
        assert "dense" in hits[0].scores
        assert len(hits) <= 2

    def test_keyword_finds_the_right_chunk(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        hits = index.keyword_search("refund billing enterprise", 3, UNRESTRICTED)
        assert hits and hits[0].chunk.doc_id == "refund"
        assert "keyword" in hits[0].scores

    def test_access_filter_applies_to_both_searches(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        public = SearchFilters()
        q = "staff escalation phone number outages"
        assert all(h.chunk.doc_id != "secret" for h in index.dense_search(embedder.embed_query(q), 10, public))
        assert all(h.chunk.doc_id != "secret" for h in index.keyword_search(q, 10, public))
        staff = SearchFilters(groups=frozenset({"staff"}))
        assert [h.chunk.doc_id for h in index.keyword_search(q, 10, staff)] == ["secret"]

    def test_source_and_date_filters(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        billing = SearchFilters(groups=None, sources=frozenset({"billing"}))
        assert {h.chunk.doc_id for h in index.dense_search(embedder.embed_query("anything"), 10, billing)} == {"refund"}
        recent = SearchFilters(groups=None, updated_after=datetime(2025, 6, 1, tzinfo=UTC))
        found = {h.chunk.doc_id for h in index.dense_search(embedder.embed_query("wifi router"), 10, recent)}
        assert "wifi" not in found and found

    def test_replace_is_idempotent_and_replaces(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        before = index.count()
        c = make_chunk("remote")
        index.replace("remote", [c], embedder.embed_documents([c.text]))
        assert index.count() == before
        new = [make_chunk("remote", ordinal=i, text=f"Part {i}: hold Back and Play to pair.") for i in range(2)]
        index.replace("remote", new, embedder.embed_documents([n.text for n in new]))
        assert index.count() == before + 1
        hits = index.keyword_search("pair hold Back Play", 10, UNRESTRICTED)
        texts = {h.chunk.text for h in hits if h.chunk.doc_id == "remote"}
        assert texts == {n.text for n in new}

    def test_delete(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        index.delete(["wifi", "no-such-doc"])
        assert all(h.chunk.doc_id != "wifi" for h in index.keyword_search("wifi router", 10, UNRESTRICTED))
        index.replace("remote", [], np.zeros((0, embedder.dimension), dtype=np.float32))
        assert index.count() == 2

    def test_metadata_round_trips(self, index: ChunkIndex, embedder: Embedder) -> None:
        self._fill(index, embedder)
        hit = index.keyword_search("refund billing", 1, UNRESTRICTED)[0].chunk
        assert hit == make_chunk("refund", source="billing")


class RerankerContract:
    def test_reorders_given_passages_only(self, reranker: Reranker) -> None:
        given = [ScoredChunk(make_chunk(k), 1.0 - i / 10, {"fused": 1.0 - i / 10}) for i, k in enumerate(TEXTS)]
        out = reranker.rerank("how do I get a refund for enterprise billing", given, top_k=2)
        assert isinstance(reranker, Reranker)
        assert 0 < len(out) <= 2
        assert {o.chunk.id for o in out} <= {g.chunk.id for g in given}
        assert out[0].chunk.doc_id == "refund"
        assert all("rerank" in o.scores and o.score == o.scores["rerank"] for o in out)
        assert out == sorted(out, key=lambda o: -o.score)

    def test_empty(self, reranker: Reranker) -> None:
        assert reranker.rerank("anything", [], top_k=3) == []


class GeneratorContract:
    request = GenerationRequest(
        question="How do I get a refund?",
        passages=(ScoredChunk(make_chunk("refund"), 1.0), ScoredChunk(make_chunk("wifi"), 0.5)),
    )

    def test_generates_cited_text(self, generator: Generator) -> None:
        assert isinstance(generator, Generator)
        gen = generator.generate(self.request)
        assert isinstance(gen, Generation)
        assert gen.text.strip()
        assert "[1]" in gen.text

    def test_stream_concatenates_to_generate(self, generator: Generator) -> None:
        streamed = "".join(generator.stream(self.request))
        assert streamed.strip() == generator.generate(self.request).text.strip()

    def test_quotes_the_passages_not_its_instructions(self, generator: Generator) -> None:
        gen = generator.generate(self.request)
        assert "30 days" in gen.text  # the refund passage's fact, not the Wi-Fi one
        assert not gen.not_found


class QueryRewriterContract:
    def test_is_a_rewriter(self, rewriter: QueryRewriter) -> None:
        assert isinstance(rewriter, QueryRewriter)
        assert rewriter.name

    def test_standalone_question_is_kept(self, rewriter: QueryRewriter) -> None:
        q = "How do I pair the Smart Remote with the TV?"
        assert rewriter.rewrite(q, ()) == q

    def test_follow_up_takes_the_subject_from_the_history(self, rewriter: QueryRewriter) -> None:
        history = (
            Turn("user", "How do I pair the Smart Remote?"),
            Turn("assistant", "Press and hold Back and Play for three seconds [1]."),
        )
        out = rewriter.rewrite("and what if that does not work?", history)
        assert "remote" in out.lower()


class ChunkLookupContract:
    def test_returns_stored_chunks_in_the_order_asked(self, index: ChunkIndex, embedder: Embedder) -> None:
        assert isinstance(index, ChunkLookup)
        chunks = [make_chunk("remote", ordinal=i, text=f"Step {i}: hold Back and Play.") for i in range(3)]
        index.replace("remote", chunks, embedder.embed_documents([c.text for c in chunks]))
        assert index.chunks(["remote#2", "nope#0", "remote#0"]) == [chunks[2], chunks[0]]
        assert index.chunks([]) == []


class CandidateScorerContract:
    def test_scores_given_ids_like_the_searches(self, index: ChunkIndex, embedder: Embedder) -> None:
        assert isinstance(index, CandidateScorer)
        for key in ("remote", "refund"):
            c = make_chunk(key)
            index.replace(c.doc_id, [c], embedder.embed_documents([c.text]))
        vectors = index.vectors(["refund#0", "unknown#0", "remote#0"])
        assert vectors.shape == (3, embedder.dimension)
        assert np.allclose(vectors[0], embedder.embed_documents([TEXTS["refund"]])[0], atol=1e-3)
        assert not vectors[1].any()  # an id it does not hold: zeros
        scores = index.keyword_scores("refund billing", ["refund#0", "remote#0", "unknown#0"])
        searched = {h.chunk.id: h.scores["keyword"] for h in index.keyword_search("refund billing", 5, UNRESTRICTED)}
        assert scores[0] == pytest.approx(searched["refund#0"], rel=1e-4)
        assert scores[1:] == [0.0, 0.0]


# -- stores ------------------------------------------------------------------------------------------
def make_answer(
    text: str = "Request it from the billing page within 30 days [1].",
    *,
    decision: Decision = Decision.ANSWERED,
    conversation: str = "C1",
    thread: str = "1.0",
    groups: frozenset[str] = frozenset({PUBLIC}),
    created_at: datetime | None = None,
    question: str = "How do I get a refund?",
) -> Answer:
    chunk = make_chunk("refund")
    cited = decision == Decision.ANSWERED
    return Answer(
        id=uuid.uuid4().hex,
        question=Question(
            question, asker="U1", platform=Platform.SLACK, conversation=conversation, thread=thread, groups=groups
        ),
        text=text,
        decision=decision,
        confidence=0.8 if cited else 0.1,
        citations=(
            (Citation(1, chunk.id, chunk.doc_id, chunk.title, chunk.heading_path, chunk.url, chunk.updated_at,
                      "within 30 days"),)
            if cited else ()
        ),
        trace=Trace(query="refund enterprise"),
        created_at=created_at or datetime.now(UTC),
    )


class AnswerStoreContract:
    def test_is_an_answer_store(self, answer_store: AnswerStore) -> None:
        assert isinstance(answer_store, AnswerStore)

    def test_answers_round_trip_and_save_is_idempotent(self, answer_store: AnswerStore) -> None:
        answer = make_answer()
        answer_store.save_answer(answer)
        answer_store.save_answer(answer)
        assert answer_store.get_answer(answer.id) == answer
        edited = Answer(**{**answer.__dict__, "text": "Edited [1]."})
        answer_store.save_answer(edited)
        assert answer_store.get_answer(answer.id) == edited
        assert answer_store.get_answer("no-such-answer") is None

    def test_one_vote_per_user_and_answer(self, answer_store: AnswerStore) -> None:
        answer = make_answer()
        answer_store.save_answer(answer)
        at = datetime(2026, 3, 1, tzinfo=UTC)
        answer_store.save_feedback(Feedback(answer.id, "U1", Platform.SLACK, Vote.UP, created_at=at))
        answer_store.save_feedback(Feedback(answer.id, "U1", Platform.SLACK, Vote.DOWN, "wrong", created_at=at))
        answer_store.save_feedback(Feedback(answer.id, "U2", Platform.SLACK, Vote.UP, created_at=at))
        votes = {f.user: (f.vote, f.comment) for f in answer_store.feedback_for(answer.id)}
        assert votes == {"U1": (Vote.DOWN, "wrong"), "U2": (Vote.UP, "")}
        assert answer_store.feedback_for("no-such-answer") == []

    def test_a_vote_on_an_unknown_answer_is_rejected(self, answer_store: AnswerStore) -> None:
        with pytest.raises(ProviderRejected):
            answer_store.save_feedback(Feedback("no-such-answer", "U1", Platform.SLACK, Vote.UP))

    def test_vote_records_of_answered_questions(self, answer_store: AnswerStore) -> None:
        answered = make_answer(groups=frozenset({PUBLIC, "staff"}))
        declined = make_answer("I could not find that.", decision=Decision.DECLINED)
        for a in (answered, declined):
            answer_store.save_answer(a)
            answer_store.save_feedback(Feedback(a.id, "U7", Platform.SLACK, Vote.DOWN))
        [record] = answer_store.vote_records()
        assert record.query == "refund enterprise"  # what was searched, not the raw question
        assert record.chunk_ids == ("refund#0",)
        assert not record.up and record.voter == "U7" and record.platform == "slack"
        assert record.groups == frozenset({PUBLIC, "staff"}) and not record.confirmed
        assert record.at.tzinfo is not None


class DocumentStoreContract:
    def _version(self, store: DocumentStore, key: str, version: int, run_id: str, *, text: str | None = None,
                 deleted: bool = False, source: str = "docs") -> None:
        chunk = make_chunk(key, source=source, text=text)
        chunks = [] if deleted else [chunk]
        vectors = np.full((len(chunks), 4), 0.5, dtype=np.float32)
        state = DocumentState(key, source, "" if deleted else f"hash-{key}-{version}", "emb", version,
                              deleted=deleted, url=chunk.url)
        store.record(state, chunks, vectors, run_id)

    def test_is_a_document_store(self, document_store: DocumentStore) -> None:
        assert isinstance(document_store, DocumentStore)
        assert document_store.states() == {} and document_store.last_run() is None

    def test_record_makes_the_current_version_idempotently(self, document_store: DocumentStore) -> None:
        document_store.start_run("r1", "docs")
        document_store.start_run("r1", "docs")
        self._version(document_store, "remote", 1, "r1")
        self._version(document_store, "remote", 1, "r1")
        self._version(document_store, "refund", 1, "r1", source="billing")
        document_store.finish_run("r1", "2 added")
        states = document_store.states()
        assert set(states) == {"remote", "refund"}
        assert states["remote"] == DocumentState("remote", "docs", "hash-remote-1", "emb", 1, False,
                                                 "https://docs.example.com/remote")
        assert set(document_store.states("billing")) == {"refund"}
        assert document_store.last_run() == "r1"

    def test_rollback_restores_the_version_before_the_run(self, document_store: DocumentStore) -> None:
        document_store.start_run("r1", "docs")
        self._version(document_store, "remote", 1, "r1", text="Old text about pairing.")
        document_store.finish_run("r1", "")
        document_store.start_run("r2", "docs")
        self._version(document_store, "remote", 2, "r2", text="New text about pairing.")
        self._version(document_store, "wifi", 1, "r2")
        self._version(document_store, "refund", 1, "r2", deleted=True)
        document_store.finish_run("r2", "")
        assert document_store.last_run() == "r2"
        restored = dict(document_store.rollback_run("r2"))
        assert set(restored) == {"remote", "wifi", "refund"}
        assert restored["wifi"] is None and restored["refund"] is None
        remote = restored["remote"]
        assert remote is not None and remote.state.version == 1
        assert [c.text for c in remote.chunks] == ["Old text about pairing."] and remote.vectors.shape == (1, 4)
        assert set(document_store.states()) == {"remote"} and document_store.states()["remote"].version == 1
        assert document_store.last_run() == "r1"
        assert document_store.rollback_run("r2") == []  # nothing left to undo
        assert document_store.rollback_run("never-ran") == []

    def test_a_removal_is_a_deleted_version(self, document_store: DocumentStore) -> None:
        document_store.start_run("r1", "docs")
        self._version(document_store, "remote", 1, "r1")
        self._version(document_store, "remote", 2, "r1", deleted=True)
        assert document_store.states()["remote"].deleted

    def test_no_renames_pending_in_a_new_database(self, document_store: DocumentStore) -> None:
        assert document_store.pending_renames(10) == []
        document_store.finish_renames(["unknown"])  # idempotent, unknown ids ignored
        assert document_store.pending_renames(10) == []


class SyncStateStoreContract:
    def test_is_a_sync_state_store(self, sync_store: SyncStateStore) -> None:
        assert isinstance(sync_store, SyncStateStore)

    def test_an_interrupted_sync_is_resumed_under_its_run_id(self, sync_store: SyncStateStore, source_id: str) -> None:
        assert sync_store.begin_sync(source_id, "run-1") == ("run-1", False)
        assert sync_store.begin_sync(source_id, "run-2") == ("run-1", True)  # crashed: resume run-1
        sync_store.finish_sync(source_id, "run-1", "done")
        sync_store.finish_sync(source_id, "run-1", "done")  # idempotent
        assert sync_store.begin_sync(source_id, "run-3") == ("run-3", False)

    def test_checkpoints_are_saved_replaced_and_deleted(self, sync_store: SyncStateStore, source_id: str) -> None:
        assert sync_store.documents(source_id) == {}
        a = SourceDocument("a", ("docs:a",), "v1", "emb", "run-1")
        b = SourceDocument("b", ("docs:b1", "docs:b2"), None, "emb", "run-1")
        sync_store.save_documents(source_id, [a, b])
        sync_store.save_documents(source_id, [a])  # idempotent
        assert sync_store.documents(source_id) == {"a": a, "b": b}
        a2 = SourceDocument("a", ("docs:a",), "v2", "emb", "run-2")
        sync_store.save_documents(source_id, [a2])
        sync_store.save_documents(source_id, [])
        assert sync_store.documents(source_id)["a"] == a2
        sync_store.delete_documents(source_id, ["b", "never-there"])
        sync_store.delete_documents(source_id, ["b"])
        assert sync_store.documents(source_id) == {"a": a2}
        assert sync_store.documents("another-source") == {}


def make_verified(answer: Answer, *, vid: str | None = None, created_at: datetime | None = None,
                  groups: frozenset[str] = frozenset({PUBLIC})) -> VerifiedAnswer:
    return VerifiedAnswer(
        id=vid or uuid.uuid4().hex[:24],
        question=answer.question.text,
        text="Open Billing, choose the invoice and press **Refund**.",
        author="UEXP",
        author_name="alice",
        platform=Platform.SLACK,
        conversation=answer.question.conversation,
        thread=answer.question.thread,
        message_id="171.5",
        url="https://example.slack.com/archives/C1/p171",
        groups=groups,
        created_at=created_at or datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
        paraphrases=("Can I get my money back?",),
        answer_id=answer.id,
        marked_by="UEXP",
        review_by=datetime(2026, 11, 1, tzinfo=UTC),
    )


class VerifiedStoreContract:
    def test_is_a_verified_store(self, verified_store: VerifiedStore) -> None:
        assert isinstance(verified_store, VerifiedStore)
        assert verified_store.records() == [] and verified_store.get("nope") is None

    def test_save_is_idempotent_by_id_and_round_trips(
        self, verified_store: VerifiedStore, answer_store: AnswerStore
    ) -> None:
        answer = make_answer("I could not find that.", decision=Decision.DECLINED)
        answer_store.save_answer(answer)
        v = make_verified(answer, groups=frozenset({PUBLIC, "staff"}))
        verified_store.save(v)
        verified_store.save(v)
        assert verified_store.get(v.id) == v
        assert verified_store.records() == [v]
        edited = VerifiedAnswer(**{**v.__dict__, "text": "Use the billing page.", "updated_at": v.created_at})
        verified_store.save(edited)
        assert verified_store.records(with_uses=False) == [edited]

    def test_records_newest_first_removed_only_when_asked(
        self, verified_store: VerifiedStore, answer_store: AnswerStore
    ) -> None:
        answer = make_answer("I could not find that.", decision=Decision.DECLINED)
        answer_store.save_answer(answer)
        old = make_verified(answer, created_at=datetime(2026, 1, 1, tzinfo=UTC))
        new = make_verified(answer, created_at=datetime(2026, 2, 1, tzinfo=UTC))
        gone = VerifiedAnswer(**{**make_verified(answer).__dict__, "removed": True})
        for v in (old, new, gone):
            verified_store.save(v)
        assert [r.id for r in verified_store.records()] == [new.id, old.id]
        assert {r.id for r in verified_store.records(include_removed=True)} == {old.id, new.id, gone.id}
        assert verified_store.get(gone.id) == gone

    def test_uses_count_the_answers_that_cite_it(
        self, verified_store: VerifiedStore, answer_store: AnswerStore
    ) -> None:
        answer = make_answer("I could not find that.", decision=Decision.DECLINED)
        answer_store.save_answer(answer)
        v = make_verified(answer)
        verified_store.save(v)
        citing = make_answer("Open Billing [1].")
        cited = Citation(1, f"{v.doc_id}#0", v.doc_id, v.question, (), v.url, None, "Open Billing")
        answer_store.save_answer(Answer(**{**citing.__dict__, "citations": (cited,)}))
        assert [r.uses for r in verified_store.records()] == [1]
        assert [r.uses for r in verified_store.records(with_uses=False)] == [0]

    def test_thread_answers_and_votes(self, verified_store: VerifiedStore, answer_store: AnswerStore) -> None:
        t0 = datetime(2026, 4, 1, tzinfo=UTC)
        first = make_answer(thread="9.1", created_at=t0)
        second = make_answer("I could not find that.", decision=Decision.DECLINED, thread="9.1",
                             created_at=t0 + timedelta(minutes=1), question="And the fee?")
        elsewhere = make_answer(thread="9.2", created_at=t0)
        for a in (first, second, elsewhere):
            answer_store.save_answer(a)
        answer_store.save_feedback(Feedback(first.id, "U1", Platform.SLACK, Vote.DOWN))
        answer_store.save_feedback(Feedback(first.id, "U2", Platform.SLACK, Vote.DOWN))
        answer_store.save_feedback(Feedback(first.id, "U3", Platform.SLACK, Vote.UP))
        found = verified_store.thread_answers("slack", "C1", "9.1")
        assert [(t.answer.id, t.down_votes) for t in found] == [(second.id, 0), (first.id, 2)]
        assert all(t.needs_answer for t in found)
        one = verified_store.answer_with_votes(first.id)
        assert one is not None and one.answer == first and one.down_votes == 2
        assert verified_store.answer_with_votes("nope") is None
        assert verified_store.thread_answers("teams", "C1", "9.1") == []

    def test_declined_questions_newest_first(self, verified_store: VerifiedStore, answer_store: AnswerStore) -> None:
        t0 = datetime(2026, 4, 1, tzinfo=UTC)
        for i in range(3):
            answer_store.save_answer(make_answer("No idea.", decision=Decision.DECLINED, question=f"Question {i}?",
                                                 created_at=t0 + timedelta(hours=i)))
        answer_store.save_answer(make_answer(created_at=t0 + timedelta(days=1)))  # answered: not listed
        rows = verified_store.declined_questions(2)
        assert [q for _, q, _ in rows] == ["Question 2?", "Question 1?"]
        assert all(at.tzinfo is not None for _, _, at in rows)

    def test_upvoted_answers_for_the_export(self, verified_store: VerifiedStore, answer_store: AnswerStore) -> None:
        liked, disliked = make_answer(), make_answer(question="What about fees?")
        for a in (liked, disliked):
            answer_store.save_answer(a)
        answer_store.save_feedback(Feedback(liked.id, "U1", Platform.SLACK, Vote.UP))
        answer_store.save_feedback(Feedback(disliked.id, "U1", Platform.SLACK, Vote.DOWN))
        [example] = verified_store.upvoted()
        assert example.question == liked.question.text and example.answer == liked.text
        assert example.passages == (("Refund", "within 30 days"),)


# -- background work ------------------------------------------------------------------------------
def finished(queue: IngestQueue, job_id: str, timeout_s: float = 90) -> JobStatus:
    import time

    deadline = time.monotonic() + timeout_s
    status = queue.status(job_id)
    while not status.finished and time.monotonic() < deadline:
        time.sleep(0.2)
        status = queue.status(job_id)
    assert status.finished, f"job still {status}"
    return status


class IngestQueueContract:
    def test_is_an_ingest_queue(self, ingest_queue: IngestQueue) -> None:
        assert isinstance(ingest_queue, IngestQueue)
        assert ingest_queue.status("no-such-job").state == "unknown"

    def test_ingest_returns_at_once_and_the_job_ends_done(self, ingest_queue: IngestQueue, ingest_target: str) -> None:
        first = ingest_queue.enqueue_ingest(ingest_target, "U1", {"channel": "C1"})
        assert ingest_queue.status(first).state in ("queued", "running", "done")
        second = ingest_queue.enqueue_ingest(ingest_target, "U1", {})  # not idempotent: a second job
        assert second != first
        assert finished(ingest_queue, first).state == "done"
        again = finished(ingest_queue, second)
        assert again.state == "done" and again.summary

    def test_sync_of_a_registered_source(self, ingest_queue: IngestQueue, sync_source: str) -> None:
        done = finished(ingest_queue, ingest_queue.enqueue_sync(sync_source, "web:admin"))
        assert done.state == "done" and "listed" in done.summary

    def test_a_job_that_cannot_succeed_fails_with_the_reason(self, ingest_queue: IngestQueue, bad_target: str) -> None:
        failed = finished(ingest_queue, ingest_queue.enqueue_ingest(bad_target, "U1", {}))
        assert failed.state == "failed" and failed.error


class IngestContract:
    def test_ingest_and_remove(self, ingest: Ingest, index: ChunkIndex) -> None:
        assert isinstance(ingest, Ingest)
        doc = Document(id="kb:refund", source="kb", title="Refunds",
                       sections=(Section(("Refunds",), TEXTS["refund"]),), url="https://docs.example.com/refund",
                       content_hash="h1", updated_at=datetime(2026, 1, 1, tzinfo=UTC))
        ingest.ingest([doc], source="kb")
        ingest.ingest([doc], source="kb")  # unchanged: nothing new
        hits = index.keyword_search("refund enterprise billing", 5, UNRESTRICTED)
        assert [h.chunk.doc_id for h in hits] == ["kb:refund"]
        ingest.remove("kb:refund", "kb", "run-x")
        ingest.remove("kb:refund", "kb", "run-y")
        assert index.keyword_search("refund enterprise billing", 5, UNRESTRICTED) == []


class ConnectorContract:
    def test_lists_and_loads_every_item(self, connector: Connector, expected_items: dict[str, str]) -> None:
        assert isinstance(connector, Connector) and connector.kind
        items = list(connector.items())
        assert {i.external_id for i in items} == set(expected_items)
        again = {i.external_id: i.marker for i in connector.items()}
        assert again == {i.external_id: i.marker for i in items}  # listing changes nothing
        for item in items:
            docs = connector.load(item)
            assert docs and {d.title for d in docs} == {expected_items[item.external_id]}
            assert all(d.sections and d.id for d in docs)


class RateLimiterContract:
    def test_counts_per_key_within_the_window(self, limiter: RateLimiter) -> None:
        assert isinstance(limiter, RateLimiter)
        key, other = f"user:{uuid.uuid4().hex}", f"user:{uuid.uuid4().hex}"
        limit = Limit(2, 3600)
        limiter.hit(key, limit)
        limiter.hit(key, limit)
        with pytest.raises(RateLimited) as raised:
            limiter.hit(key, limit)
        assert 0 < raised.value.retry_after <= 3600
        limiter.hit(other, limit)  # another key has its own count

    def test_unlimited_never_raises(self, limiter: RateLimiter) -> None:
        key = f"user:{uuid.uuid4().hex}"
        for _ in range(5):
            limiter.hit(key, Limit(0, 60))


@pytest.fixture
def offline_embedder() -> Embedder:
    from adapters.providers.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder()
