"""The answer service, end to end on a small real index (OnnxEmbedder + LocalIndex + SqlAnswerStore)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.providers.local_index import LocalIndex
from adapters.providers.onnx_embedder import OnnxEmbedder
from adapters.providers.sql_store import SqlAnswerStore
from bot.answering import DECLINE_TEXT, AnswerService, DeclinePolicy, check_citations, own_content, support
from bot.answertype import AnswerType, expected_type, has_type
from bot.calibration import calibrate, load_or_calibrate
from bot.extractive import ExtractiveGenerator
from bot.ports import Generation, GenerationRequest
from bot.retrieval import Retriever
from bot.rewrite import standalone_query
from bot.types import PUBLIC, Decision, Question, ScoredChunk, SearchFilters, Turn
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


def _retriever(path: Path, docs: dict[str, str]) -> Retriever:
    index = LocalIndex(path)
    for key, text in docs.items():
        access = ("admins",) if key == "sso-admin" else (PUBLIC,)
        chunk = make_chunk(key, text=text, access=access)
        index.replace(key, [chunk], _EMBEDDER.embed_documents([chunk.context + "\n" + text]))
    return Retriever(_EMBEDDER, index)


@pytest.fixture
def retriever(tmp_path: Path) -> Retriever:
    return _retriever(tmp_path / "index.sqlite", DOCS)


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


# -- answer type ---------------------------------------------------------------------------------
TYPED_DOCS = {
    **DOCS,
    "vpn": "The VPN gateway connects your office network to the cloud. "
    "Each gateway supports several tunnels and uses IKEv2 for key exchange. "
    "The gateway is billed to the account that created it.",
}
PRICED_DOCS = {
    **DOCS,
    "vpn": "The VPN gateway connects your office network to the cloud. "
    "Each gateway supports several tunnels and uses IKEv2 for key exchange. "
    "The gateway costs $30 per month, billed to the account that created it.",
}


def _service(retriever: Retriever, **policy: bool) -> AnswerService:
    return AnswerService(
        retriever, ExtractiveGenerator(), None, policy=DeclinePolicy(min_dense=0.3, **policy), k=4
    )


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Is it a paid service and how much?", AnswerType.COST),
        ("what is the cost of restoring toolchain?", AnswerType.COST),
        ("Is Cloud Shell workspace free?", AnswerType.COST),
        ("How much does the gateway cost per month?", AnswerType.COST),
        ("Is it  a paid service?", AnswerType.COST),
        ("do I have a limitation of how many queries I can create?", AnswerType.QUANTITY),
        ("What are the minimum of concurrent replications that it is allowed?", AnswerType.QUANTITY),
        ("then how long would it take to update worker nodes?", AnswerType.DURATION),
        ("Is it available in Spanish?", AnswerType.LANGUAGE),
        ("How many languages do they provide assistance in?", AnswerType.LANGUAGE),
        ("Do you know the regions where Immutable Object Storage is available?", AnswerType.LOCATION),
        # Mentions of a word, not a request for that kind of answer:
        ("Can I change from metered pricing to unmetered anytime?", None),
        ("How can I limit my tweet search to a single user?", None),
        ("How do I select Minimum Backlight?", None),
        ("How do I change the menu language?", None),
        ("When I share a link, can it open the file directly?", None),
        ("When are refunds paid back to my card?", None),
        ("Where can I find a list of publicly available boards?", None),
    ],
)
def test_expected_answer_type(question: str, kind: AnswerType | None) -> None:
    assert expected_type(question) is kind


def test_answer_type_evidence() -> None:
    assert has_type("The gateway costs $30 per month [1].", AnswerType.COST)
    assert has_type("Lite plans are free [2].", AnswerType.COST)
    assert not has_type("The gateway is billed to the account that created it [1].", AnswerType.COST)
    assert has_type("Only one copy can exist in each region [1].", AnswerType.QUANTITY)
    assert has_type("You can create up to 750 backups [1].", AnswerType.QUANTITY)
    assert not has_type("It uses IKEv2 for several tunnels [1].", AnswerType.QUANTITY)
    # Citation markers, links and "one or more" are not counts; "shows up to allow" is not "up to N".
    assert not has_type(
        "Specify one or more [URIs](https://x.example/a1b2c3) [2]. A Set Limit option shows up to allow it [1].",
        AnswerType.QUANTITY,
    )
    assert has_type("Updates usually take about 10 minutes [1].", AnswerType.DURATION)
    assert not has_type("Update the worker nodes from the console [1].", AnswerType.DURATION)
    assert has_type("Regional buckets are in us-south and eu-de [1].", AnswerType.LOCATION)
    assert not has_type(
        "Object Storage offers Cross Region and Regional resiliency [1].", AnswerType.LOCATION
    )
    # A question naming a language needs that language, not any.
    assert has_type(
        "The dictionary supports Spanish [1].", AnswerType.LANGUAGE, "Is it available in Spanish?"
    )
    assert not has_type(
        "The dictionary supports French [1].", AnswerType.LANGUAGE, "Is it available in Spanish?"
    )


def test_cost_question_over_passages_without_a_price_is_declined(tmp_path: Path) -> None:
    retriever = _retriever(tmp_path / "index.sqlite", TYPED_DOCS)
    question = Question("What is the cost of the VPN gateway?")
    # Without the answer-type check the topical passage would be quoted as if it answered.
    assert _service(retriever, answer_type=False).answer(question).decision == Decision.ANSWERED
    answer = _service(retriever).answer(question)
    assert answer.decision == Decision.DECLINED
    assert answer.text.startswith(DECLINE_TEXT)


def test_cost_question_over_a_passage_with_a_price_is_answered(tmp_path: Path) -> None:
    retriever = _retriever(tmp_path / "index.sqlite", PRICED_DOCS)
    answer = _service(retriever).answer(Question("What is the cost of the VPN gateway?"))
    assert answer.decision == Decision.ANSWERED
    assert answer.citations[0].doc_id == "vpn"
    assert "$30" in answer.text


def test_quantity_question_needs_a_number(tmp_path: Path) -> None:
    question = Question("How many tunnels does each VPN gateway support?")
    without = _service(_retriever(tmp_path / "a.sqlite", TYPED_DOCS)).answer(question)
    assert without.decision == Decision.DECLINED
    with_number = _service(_retriever(tmp_path / "b.sqlite", DOCS)).answer(question)
    assert with_number.decision == Decision.ANSWERED
    assert "10 tunnels" in with_number.text


def test_language_question_is_declined_when_the_language_is_not_named(service: AnswerService) -> None:
    history = (
        Turn("user", "How do I install the Acme CLI?"),
        Turn("assistant", "Use pip install acme-cli [1]."),
    )
    answer = service.answer(Question("Is the Acme CLI installer available in Spanish?", history=history))
    assert answer.decision == Decision.DECLINED


# -- follow-ups with no subject of their own ---------------------------------------------------------
def test_vague_follow_up_is_declined(retriever: Retriever) -> None:
    history = (
        Turn("user", "How do I pair the remote?"),
        Turn("assistant", "Hold the Back and Play buttons for 3 seconds [1]."),
    )
    question = Question("Are those the only steps?", history=history)
    # The carried topic alone would re-quote the pairing passage: a repeat, not an answer.
    assert _service(retriever, own_content=False).answer(question).decision == Decision.ANSWERED
    assert _service(retriever).answer(question).decision == Decision.DECLINED
    # A short follow-up with a subject of its own is still answered.
    linux = _service(retriever).answer(
        Question("does it also work on Linux?", history=(Turn("user", "How do I install the Acme CLI?"),))
    )
    assert linux.decision == Decision.ANSWERED


def test_own_content_ignores_pointers_back() -> None:
    assert own_content("Are those the only steps?") == []
    assert own_content("Can you provide an example?") == []
    assert own_content("there should be one") == []
    assert own_content("How can I create one?") == ["create"]


# -- the extractive generator ------------------------------------------------------------------------
def _request(question: str, texts: list[str]) -> GenerationRequest:
    hits = [
        ScoredChunk(make_chunk(f"d{i}", text=t), 1.0 - i / 10, {"dense": 0.9}) for i, t in enumerate(texts)
    ]
    return GenerationRequest(question, tuple(hits))


def test_extractive_prefers_the_sentence_with_the_asked_for_number_over_the_faq_heading() -> None:
    faq = (
        "How many copies of my backup can I create in other regions? "
        "You can copy a backup snapshot from one region to another region. "
        "Only one copy of the backup snapshot can exist in each region."
    )
    text = (
        ExtractiveGenerator()
        .generate(_request("How many copies of my backup can I create in other regions?", [faq, faq]))
        .text
    )
    assert "Only one copy" in text


def test_extractive_quotes_one_passage_and_cites_it_once() -> None:
    same = "Hold the Back and Play buttons for 3 seconds to pair the remote."
    text = (
        ExtractiveGenerator()
        .generate(_request("How do I pair the remote?", [same, same + " Then wait."]))
        .text
    )
    assert text.count("Hold the Back") == 1
    assert re.findall(r"\[\d+\]", text) == ["[1]"]


# -- semantic checks (sentence-level cosine with the retriever's embedder) ----------------------------
LONG_DOCS = {
    **DOCS,
    "network": "The office router sits in the server room next to the printer. "
    "Cables are labelled by floor and by desk number. "
    "Guests use the separate visitor network, which has no access to internal services. "
    "To reset the router password, hold its reset pin for ten seconds until the lights flash. "
    "The facilities team replaces broken cables on request.",
}


def test_sentence_gate_passes_a_question_one_sentence_answers(tmp_path: Path) -> None:
    retriever = _retriever(tmp_path / "index.sqlite", LONG_DOCS)
    question = "How can I reset the router password?"
    top = retriever.search(question, 4, SearchFilters()).passages
    passage_cos = max(p.scores["dense"] for p in top)
    sentence_cos = float(
        (
            _EMBEDDER.embed_documents(
                ["To reset the router password, hold its reset pin for ten seconds until the lights flash."]
            )
            @ _EMBEDDER.embed_query(question)
        )[0]
    )
    assert sentence_cos > passage_cos  # the passage vector is diluted by its other sentences
    gate = (passage_cos + sentence_cos) / 2

    def ask(sentence_gate: bool, covered_dense: float = 1.0) -> Decision:
        policy = DeclinePolicy(min_dense=gate, sentence_gate=sentence_gate, covered_dense=covered_dense)
        return (
            AnswerService(retriever, ExtractiveGenerator(), None, policy=policy, k=4)
            .answer(Question(question))
            .decision
        )

    assert ask(True) == Decision.ANSWERED
    assert ask(False) == Decision.DECLINED
    # Every word of the question is in the best keyword hit: the gate is lowered for it.
    assert retriever.search(question, 4, SearchFilters()).coverage == 1.0
    assert ask(False, covered_dense=passage_cos / gate) == Decision.ANSWERED


def test_only_the_first_passages_cited_count_for_support(tmp_path: Path) -> None:
    docs = {
        "refunds": "Refunds are paid back to the original card within 5 business days.",
        "refunds-faq": "Refunds are paid back to your card in 5 business days (annual plans: 30 days).",
        "vpn": DOCS["vpn"],
    }
    retriever = _retriever(tmp_path / "index.sqlite", docs)
    question = "Are refunds paid back to the card?"
    ranked = [p.chunk.doc_id for p in retriever.search(question, 3, SearchFilters()).passages]
    assert set(ranked[:2]) == {"refunds", "refunds-faq"} and ranked[2] == "vpn"

    def decision(support_passages: int, text: str) -> Decision:
        policy = DeclinePolicy(min_dense=0.0, support_passages=support_passages, answer_type=False)
        svc = AnswerService(retriever, ScriptedGenerator(text), None, policy=policy, k=3)
        return svc.answer(Question(question)).decision

    second = "Refunds are paid back to the card [2]."
    assert decision(0, second) == Decision.ANSWERED  # every cited passage counts
    assert decision(2, second) == Decision.ANSWERED
    assert decision(1, second) == Decision.DECLINED  # the supporting passage is cited from too far down
    assert decision(1, "Refunds are paid back to the card [1][2].") == Decision.ANSWERED
    assert decision(0, "Gateways have tunnels [3].") == Decision.DECLINED


def test_a_cited_sentence_restating_the_question_overrides_low_support(retriever: Retriever) -> None:
    question = Question("Does the installer need Python 3.10 or later?")

    def ask(verbatim: float) -> Decision:
        # min_support above 1: the support check alone always fails.
        policy = DeclinePolicy(min_dense=0.3, min_support=1.01, verbatim=verbatim)
        return (
            AnswerService(retriever, ExtractiveGenerator(), None, policy=policy, k=4)
            .answer(question)
            .decision
        )

    assert ask(0.85) == Decision.ANSWERED
    assert ask(0.0) == Decision.DECLINED
    assert ask(0.999) == Decision.DECLINED
