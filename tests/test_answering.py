"""The answer service, end to end on a small real index (OnnxEmbedder + LocalIndex + SqlAnswerStore)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.providers.local_index import LocalIndex
from adapters.providers.onnx_embedder import OnnxEmbedder
from adapters.providers.sql_store import SqlAnswerStore
from bot.answerability import FEATURES, AnswerabilityModel, KBLevels, default_model, features
from bot.answering import DECLINE_TEXT, AnswerService, DeclinePolicy, check_citations
from bot.answertype import AnswerType, expected_type, has_type
from bot.calibration import calibrate, calibrate_report, load_or_calibrate, offtopic_bank
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
    # The knowledge base calibrates itself (five documents are enough for the procedure).
    svc = AnswerService(retriever, ExtractiveGenerator(), store, k=4)
    return AnswerService(retriever, ExtractiveGenerator(), store, policy=calibrate(svc), k=4)


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


def _features(question: str, query: str, texts: list[str]) -> dict[str, float]:
    hits = [ScoredChunk(make_chunk(f"d{i}", text=t), 1.0, {"dense": 0.5}) for i, t in enumerate(texts)]
    return features(
        question,
        query,
        followup=query != question,
        passages=hits,
        dense=hits,
        keyword=hits,
        coverage=None,
        idf=lambda w: 2.0 if w in {"linux", "spanish"} else 1.0,
        max_idf=4.0,
        sentence_cos=0.5,
        levels=KBLevels(off_dense=0.2, on_dense=0.6),
    )


def test_features_weigh_rare_and_carried_words() -> None:
    on = _features("does it run on Linux?", "does it run on Linux? install cli", ["The CLI runs on Linux."])
    off = _features("does it run on Linux?", "does it run on Linux? install cli", ["Windows only."])
    assert set(on) == set(FEATURES)
    assert on["support_own"] == 1.0 > off["support_own"] == 0.0
    # The carried words ("install", "cli") count half: the passage lacks "install".
    assert 0.5 < on["support_query"] < 1.0
    # The rare word the passage lacks is what ``missing_idf`` reports (by the corpus's own IDF).
    assert off["missing_idf"] == 2.0 / 4.0 and on["missing_idf"] == 0.0
    assert on["dense_rel"] == pytest.approx((0.5 - 0.2) / 0.4)
    asks = _features("How many tunnels does a gateway support?", "", ["Each gateway supports tunnels."])
    assert asks["type_asked"] == 1.0 and asks["type_missing"] == 1.0
    told = _features("How many tunnels does a gateway support?", "", ["Each gateway supports 10 tunnels."])
    assert told["type_missing"] == 0.0


def test_answerability_model_round_trips_and_is_a_probability() -> None:
    model = default_model()
    assert model.names == FEATURES and 0.0 < model.threshold < 1.0
    again = AnswerabilityModel.from_json(model.to_json())
    values = _features("does it run on Linux?", "does it run on Linux?", ["The CLI runs on Linux."])
    p = model.probability(values)
    assert 0.0 <= p <= 1.0 and again.probability(values) == pytest.approx(p)
    broken = {**model.to_json(), "coef": [1.0]}
    with pytest.raises(ValueError, match="one value per feature"):
        AnswerabilityModel.from_json(broken)


def test_confidence_is_the_model_probability_and_ranks_answers_above_declines(service: AnswerService) -> None:
    answered = service.answer(Question("When are refunds paid back to my card?"))
    declined = service.answer(Question("What is the best recipe for a lemon tart?"))
    assert answered.decision == Decision.ANSWERED and declined.decision == Decision.DECLINED
    assert 0.0 <= declined.confidence < answered.confidence <= 1.0


def test_a_stricter_threshold_declines_what_the_default_answers(retriever: Retriever) -> None:
    question = Question("When are refunds paid back to my card?")
    assert (
        AnswerService(retriever, ExtractiveGenerator(), None, k=4).answer(question).decision
        == Decision.ANSWERED
    )
    strict = AnswerService(retriever, ExtractiveGenerator(), None, policy=DeclinePolicy(threshold=1.0), k=4)
    assert strict.answer(question).decision == Decision.DECLINED


def test_calibration_is_deterministic_stored_and_explained(retriever: Retriever, tmp_path: Path) -> None:
    svc = AnswerService(retriever, ExtractiveGenerator(), None, k=4)
    a, b = calibrate(svc), calibrate(svc)
    assert a == b
    assert 0.0 <= a.off_dense < a.on_dense <= 1.0
    assert a.threshold is not None and a.threshold >= default_model().threshold
    report = calibrate_report(svc)
    assert report.offtopic > 0 and report.positives > 0
    assert "off-topic" in report.explain() and "threshold" in report.explain()
    # The bank's questions are declined on this knowledge base at the target rate.
    assert report.offtopic_declined >= 0.9
    path = tmp_path / "calibration.json"
    first = load_or_calibrate(path, svc)
    assert path.is_file()
    assert load_or_calibrate(path, svc) == first


def test_the_offtopic_bank_is_a_few_hundred_distinct_questions() -> None:
    bank = offtopic_bank()
    assert len(bank) >= 200 and len(set(bank)) == len(bank)
    assert not any(q.startswith("#") for q in bank)


# -- answer type ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How much does the premium plan cost?", AnswerType.COST),
        ("What is the price of an extra seat?", AnswerType.COST),
        ("How many seats can one team have?", AnswerType.QUANTITY),
        ("What is the maximum number of seats?", AnswerType.QUANTITY),
        ("How long does an export take?", AnswerType.DURATION),
        ("Which languages does the reader support?", AnswerType.LANGUAGE),
        ("In which regions are the servers?", AnswerType.LOCATION),
        # Mentions of a word, not a request for that kind of answer:
        ("Can I switch my pricing plan?", None),
        ("How do I limit search to one user?", None),
        ("How do I change the menu language?", None),
        ("When are refunds paid back to my card?", None),
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
    assert not has_type("Specify one or more [URIs](https://x.example/a1b2c3) [2].", AnswerType.QUANTITY)
    assert has_type("Updates usually take about 10 minutes [1].", AnswerType.DURATION)
    assert not has_type("Update the worker nodes from the console [1].", AnswerType.DURATION)
    assert has_type("The servers are in Dublin and Oregon [1].", AnswerType.LOCATION)
    assert not has_type("Servers are replicated across zones [1].", AnswerType.LOCATION)
    # A question naming a language needs that language, not any.
    assert has_type("The reader supports Spanish [1].", AnswerType.LANGUAGE, "Does it support Spanish?")
    assert not has_type("The reader supports French [1].", AnswerType.LANGUAGE, "Does it support Spanish?")


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


def test_the_model_sees_the_sentence_that_answers(tmp_path: Path) -> None:
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
    # The model reads the best sentence's cosine, not only the passage's.
    svc = AnswerService(retriever, ExtractiveGenerator(), None, k=4)
    values = svc.evidence(
        Question(question), question, retriever.search(question, 4, SearchFilters()), DeclinePolicy()
    )
    assert values["sentence_cos"] == pytest.approx(sentence_cos, abs=1e-4)
    assert values["dense_top"] == pytest.approx(passage_cos, abs=1e-4)
