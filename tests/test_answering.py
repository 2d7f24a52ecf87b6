"""The answer service, end to end on a small real index (OnnxEmbedder + LocalIndex + SqlAnswerStore)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.providers.local_index import LocalIndex
from adapters.providers.onnx_embedder import OnnxEmbedder
from adapters.providers.sql_store import SqlAnswerStore
from bot.answering import DECLINE_TEXT, AnswerService, DeclinePolicy, check_citations, support
from bot.calibration import calibrate, load_or_calibrate
from bot.extractive import ExtractiveGenerator
from bot.ports import Generation, GenerationRequest
from bot.retrieval import Retriever
from bot.rewrite import standalone_query
from bot.types import PUBLIC, Decision, Question, Turn
from tests.contracts import make_chunk

_EMBEDDER = OnnxEmbedder()

DOCS = {
    "cli-install": "Install the Acme CLI with pip install acme-cli. "
    "The installer needs Python 3.10 or later. "
    "The CLI runs on Windows, macOS and Linux; on Linux it also needs the libsecret package.",
    "refunds": "Refunds are paid back to the original card within 5 business days. "
    "Annual plans can be refunded in the first 30 days after purchase.",
    "remote-pairing": "To pair the remote, hold the Back and Play buttons for 3 seconds. "
    "The TV shows a pairing message when the remote is connected.",
    "vpn": "The VPN gateway connects your office network to the cloud. "
    "Each gateway supports up to 10 tunnels and uses IKEv2 for key exchange.",
    "sso-admin": "Administrators configure single sign-on under Settings > Security. "
    "The SAML metadata URL of the identity provider is entered there.",
}


class ScriptedGenerator:
    """A generator that replies with a fixed text (to test the citation check)."""

    name = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, request: GenerationRequest) -> Generation:
        return Generation(self.text, model=self.name)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        yield self.text


@pytest.fixture
def retriever(tmp_path: Path) -> Retriever:
    index = LocalIndex(tmp_path / "index.sqlite")
    for key, text in DOCS.items():
        access = ("admins",) if key == "sso-admin" else (PUBLIC,)
        chunk = make_chunk(key, text=text, access=access)
        index.replace(key, [chunk], _EMBEDDER.embed_documents([chunk.context + "\n" + text]))
    return Retriever(_EMBEDDER, index)


@pytest.fixture
def store(tmp_path: Path) -> SqlAnswerStore:
    return SqlAnswerStore(f"sqlite:///{tmp_path}/answers.db")


@pytest.fixture
def service(retriever: Retriever, store: SqlAnswerStore) -> AnswerService:
    # A small corpus gives no useful calibration sample; the default policy is what is tested.
    return AnswerService(retriever, ExtractiveGenerator(), store, policy=DeclinePolicy(min_dense=0.3), k=4)


def test_answerable_question_is_answered_citing_the_right_passage(service: AnswerService) -> None:
    answer = service.answer(Question("When are refunds paid back to my card?"))
    assert answer.decision == Decision.ANSWERED
    assert answer.citations and answer.citations[0].doc_id == "refunds"
    assert "5 business days" in answer.text
    numbers = {c.number for c in answer.citations}
    assert numbers == set(range(1, len(answer.citations) + 1))
    assert all(f"[{n}]" in answer.text for n in numbers)


def test_off_topic_question_is_declined_and_recorded(service: AnswerService, store: SqlAnswerStore) -> None:
    answer = service.answer(Question("Who painted the Mona Lisa?"))
    assert answer.decision == Decision.DECLINED
    assert answer.text.startswith(DECLINE_TEXT)
    stored = store.get_answer(answer.id)
    assert stored is not None and stored.decision == Decision.DECLINED


def test_in_domain_question_with_absent_key_term_is_declined(
    service: AnswerService, store: SqlAnswerStore
) -> None:
    answer = service.answer(Question("How much does the VPN gateway cost per month in Swiss francs?"))
    assert answer.decision == Decision.DECLINED
    assert answer.text.startswith(DECLINE_TEXT)
    stored = store.get_answer(answer.id)
    assert stored is not None and stored.decision == Decision.DECLINED


def test_citation_to_a_number_not_given_is_dropped() -> None:
    checked = check_citations("Refunds take 5 days [1][7]. Pair with Back and Play [3] .", 2)
    assert checked.text == "Refunds take 5 days [1]. Pair with Back and Play."
    assert checked.numbers == (1,)


def test_reply_with_no_valid_citation_is_declined(retriever: Retriever, store: SqlAnswerStore) -> None:
    svc = AnswerService(retriever, ScriptedGenerator("Refunds take 5 business days [9]."), store, k=4)
    answer = svc.answer(Question("How long do refunds take?"))
    assert answer.decision == Decision.DECLINED
    assert answer.text.startswith(DECLINE_TEXT)


def test_follow_up_is_rewritten_with_the_topic(service: AnswerService) -> None:
    history = (
        Turn("user", "How do I install the Acme CLI?"),
        Turn("assistant", "Use pip install acme-cli [1]."),
    )
    query = standalone_query("does it also work on Linux?", history)
    assert "install" in query and "cli" in query.lower()
    answer = service.answer(Question("does it also work on Linux?", history=history))
    assert answer.decision == Decision.ANSWERED
    assert answer.citations[0].doc_id == "cli-install"
    assert "Linux" in answer.text
    assert answer.trace is not None and answer.trace.query == query


def test_stored_answer_round_trips_with_its_trace(service: AnswerService) -> None:
    answer = service.answer(Question("How do I pair the remote?", asker="u1"))
    stored = service.get_answer(answer.id)
    assert stored is not None
    assert stored.text == answer.text and stored.decision == answer.decision
    assert [c.chunk_id for c in stored.citations] == [c.chunk_id for c in answer.citations]
    assert stored.trace is not None and answer.trace is not None
    assert stored.trace.query == answer.trace.query
    assert [p.chunk_id for p in stored.trace.reranked] == [p.chunk_id for p in answer.trace.reranked]
    assert stored.trace.generator == "extractive"


def test_private_passage_is_never_cited_for_a_public_asker(service: AnswerService) -> None:
    q = "Where do administrators enter the SAML metadata URL for single sign-on?"
    public = service.answer(Question(q))
    assert all(c.doc_id != "sso-admin" for c in public.citations)
    assert public.trace is not None
    assert all(p.doc_id != "sso-admin" for p in public.trace.retrieved + public.trace.reranked)
    admin = service.answer(Question(q, groups=frozenset({PUBLIC, "admins"})))
    assert admin.decision == Decision.ANSWERED
    assert admin.citations[0].doc_id == "sso-admin"


def test_streaming_yields_text_then_the_final_answer(service: AnswerService) -> None:
    events = list(service.stream(Question("How do I pair the remote?")))
    assert all(isinstance(e, str) for e in events[:-1])
    assert not isinstance(events[-1], str) and events[-1].decision == Decision.ANSWERED


def test_support_weighs_carried_terms_less() -> None:
    texts = ["The CLI runs on Linux."]
    assert support("does it run on Linux?", texts, query="does it run on Linux? install cli") > support(
        "does it run on Linux?", ["Windows only."], query="does it run on Linux? install cli"
    )
    assert support("payment methods", texts) == 0.0


def test_calibration_is_deterministic_and_cached(retriever: Retriever, tmp_path: Path) -> None:
    a, b = calibrate(retriever), calibrate(retriever)
    assert a == b
    assert 0.0 < a.min_dense < 1.0
    path = tmp_path / "calibration.json"
    first = load_or_calibrate(path, retriever)
    assert path.is_file()
    assert load_or_calibrate(path, retriever) == first
