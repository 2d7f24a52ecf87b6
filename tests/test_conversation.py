"""The conversation core's rules, which Slack and Teams now share (bot/conversation.py).

Real answer service and store (the offline defaults on SQLite); the only stand-ins are an
IngestQueue and a Notifier that record what they are given (the Celery queue and the
platform notifiers are tested on a real worker in tests/test_job_notes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.factory import Services
from adapters.settings import Settings
from bot import messages
from bot.conversation import Cadence, ChatMessage, Conversation, JobReporter, VoteOutcome
from bot.errors import AccessDenied, ProviderRejected
from bot.ports import JobStatus
from bot.ratelimit import Limit, MemoryRateLimiter, RateLimits, Throttle
from bot.types import Answer, ChatAddress, Feedback, Platform, Question, Vote


class RecordingQueue:
    def __init__(self) -> None:
        self.jobs: list[tuple[str, str, dict[str, str]]] = []

    def enqueue_ingest(self, target: str, requested_by: str, notify: Mapping[str, str]) -> str:
        self.jobs.append((target, requested_by, dict(notify)))
        return f"job-{len(self.jobs)}"

    def enqueue_sync(self, source: str, requested_by: str = "", notify: Mapping[str, str] | None = None) -> str:
        raise AssertionError("the conversation never queues a sync")

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id, "queued")


class RecordingNotifier:
    def __init__(self, fail: bool = False) -> None:
        self.posts: list[tuple[ChatAddress, str]] = []
        self.updates: list[tuple[str, str]] = []
        self.fail = fail

    def post(self, address: ChatAddress, text: str) -> str:
        if self.fail:
            raise ProviderRejected("not_in_channel")
        self.posts.append((address, text))
        return f"m{len(self.posts)}"

    def update(self, address: ChatAddress, message_id: str, text: str) -> None:
        self.updates.append((message_id, text))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Services:
    settings = Settings(data_dir=tmp_path_factory.mktemp("conversation"), _env_file=None,  # type: ignore[call-arg]
                        slack_admins=["UADMIN"], teams_admins=["Admin@Contoso.com"])
    return Services(settings)


@pytest.fixture(scope="module")
def answer(services: Services) -> Answer:
    return services.answers.answer(Question(text="How do I reset my password?"))


def core(services: Services, queue: RecordingQueue | None = None, throttle: Throttle | None = None) -> Conversation:
    s = services.settings
    return Conversation(services.answers, services.access, throttle=throttle, ingest_queue=queue,
                        admins={Platform.SLACK: s.slack_admins, Platform.TEAMS: s.teams_admins})


def msg(platform: Platform = Platform.SLACK, asker: str = "UADMIN", *, private: bool = False,
        verified: bool = True) -> ChatMessage:
    return ChatMessage(platform, asker, "C1", "", private=private, verified=verified)


# -- votes: one rule for both platforms -----------------------------------------------------------
@pytest.mark.parametrize("platform", [Platform.SLACK, Platform.TEAMS])
def test_a_vote_is_recorded_with_its_time_only_on_an_answer_that_exists(
    services: Services, answer: Answer, platform: Platform
) -> None:
    conversation = core(services)
    unknown = conversation.vote(platform, "U9", "no-such-answer", Vote.UP)
    assert unknown.outcome == VoteOutcome.UNKNOWN_ANSWER and unknown.text == messages.VOTE_UNKNOWN_ANSWER
    assert services.answer_store.feedback_for("no-such-answer") == []
    before = datetime.now(UTC) - timedelta(seconds=1)
    voter = f"voter-{platform.value}"
    result = conversation.vote(platform, voter, answer.id, Vote.DOWN, "  outdated ")
    assert result.recorded and result.answer is not None and result.answer.id == answer.id
    assert result.text == messages.thanks(Vote.DOWN)
    [stored] = [f for f in services.answer_store.feedback_for(answer.id) if f.user == voter]
    assert (stored.platform, stored.vote, stored.comment) == (platform, Vote.DOWN, "outdated")
    assert stored.created_at is not None and stored.created_at.replace(tzinfo=UTC) >= before


def test_a_store_that_refuses_a_vote_gives_a_failed_outcome_not_an_error(
    services: Services, answer: Answer
) -> None:
    class Refusing:
        def __getattr__(self, name: str) -> object:
            return getattr(services.answer_store, name)

        def save_feedback(self, feedback: Feedback) -> None:
            raise ProviderRejected("constraint violated")

    from bot.answering import AnswerService

    refusing = AnswerService(services.retriever, services.generator, Refusing())  # type: ignore[arg-type]
    result = Conversation(refusing, services.access).vote(Platform.TEAMS, "U1", answer.id, Vote.UP)
    assert result.outcome == VoteOutcome.FAILED and result.text == messages.VOTE_FAILED


# -- admins ---------------------------------------------------------------------------------------
def test_admins_are_matched_case_insensitively_and_never_unauthenticated(services: Services) -> None:
    conversation = core(services)
    assert conversation.is_admin(msg(Platform.SLACK, "UADMIN"))
    assert conversation.is_admin(msg(Platform.TEAMS, "admin@contoso.com"))
    assert not conversation.is_admin(msg(Platform.TEAMS, "admin@contoso.com", verified=False))
    assert not conversation.is_admin(msg(Platform.TEAMS, "UADMIN"))  # another platform's admin
    with pytest.raises(AccessDenied, match="only the knowledge base admins"):
        conversation.require_admin(msg(Platform.SLACK, "USOMEONE"))


def test_the_platform_confirms_an_unlisted_admin_and_a_failing_look_up_means_no(services: Services) -> None:
    conversation = core(services)
    asked: list[frozenset[str]] = []

    def member(admins: frozenset[str]) -> bool:
        asked.append(admins)
        return True

    def broken(admins: frozenset[str]) -> bool:
        raise ConnectionError("directory down")

    assert conversation.is_admin(msg(Platform.SLACK, "UGROUP"), member)
    assert asked == [frozenset({"uadmin"})]
    assert conversation.is_admin(msg(Platform.SLACK, "UADMIN"), broken)  # listed: no look-up
    assert not conversation.is_admin(msg(Platform.SLACK, "UGROUP"), broken)
    assert not conversation.is_admin(msg(Platform.SLACK, "UGROUP", verified=False), member)


# -- ingest requests ------------------------------------------------------------------------------
def test_ingest_checks_target_then_admin_then_queue_then_limit(services: Services) -> None:
    queue = RecordingQueue()
    throttle = Throttle(MemoryRateLimiter(), RateLimits(ingests_per_user=Limit(1, 3600)))
    conversation = core(services, queue, throttle)
    address = ChatAddress(Platform.SLACK, "C1", user="UADMIN", team="T1")
    bad = conversation.request_ingest(msg(), "ftp://x.example", address)
    assert not bad.queued and "not a valid http(s) URL" in bad.text and messages.INGEST_USAGE in bad.text
    refused = conversation.request_ingest(msg(asker="UNOBODY"), "handbook", address)
    assert refused.text == messages.REFUSE_INGEST
    assert core(services, None, throttle).request_ingest(msg(), "handbook", address).text == messages.NO_QUEUE
    assert queue.jobs == []  # none of those reached the queue, nor counted against the limit
    queued = conversation.request_ingest(msg(), "handbook", address, where="in a direct message")
    assert queued.job_id == "job-1" and queued.text == messages.ingest_queued("handbook", "job-1", "in a direct message")
    assert queue.jobs == [("handbook", "slack:UADMIN", address.to_notify())]
    assert ChatAddress.from_notify(queue.jobs[0][2]) == address
    limited = conversation.request_ingest(msg(), "other", address)
    assert not limited.queued and "ingests faster than" in limited.text and len(queue.jobs) == 1


# -- access and cadence ---------------------------------------------------------------------------
def test_directory_groups_count_only_in_an_authenticated_private_chat(services: Services) -> None:
    conversation = core(services)

    def hr() -> frozenset[str]:
        return frozenset({"hr"})

    def down() -> frozenset[str]:
        raise TimeoutError("graph")

    assert "hr" in conversation.groups(msg(private=True), hr)
    assert "hr" not in conversation.groups(msg(private=False), hr)
    assert "hr" not in conversation.groups(msg(private=True, verified=False), hr)
    assert conversation.groups(msg(private=True), down) == conversation.groups(msg(private=True))


def test_the_cadence_waits_before_the_first_update_then_paces_them() -> None:
    clock = Clock()
    cadence = Cadence(0.8, 1.0, clock)
    clock.now += 0.5
    assert not cadence.due()
    clock.now += 0.4
    assert cadence.due() and not cadence.due()
    clock.now += 1.0
    assert cadence.due()


# -- job notes (what the worker calls) ------------------------------------------------------------
def test_job_notes_pace_progress_in_one_message_then_post_the_result_once() -> None:
    clock, notifier = Clock(), RecordingNotifier()
    reporter = JobReporter(lambda platform: notifier, progress_every_s=30, clock=clock)
    address = ChatAddress(Platform.TEAMS, "a:1", thread="7", service_url="http://127.0.0.1:1/")
    notes = reporter.notes("handbook", address.to_notify())
    assert notes is not None
    running = JobStatus("j", "running", done=1, total=3)
    notes.advanced(running)
    assert notifier.posts == []  # short jobs only get their result
    clock.now += 31
    notes.advanced(running)
    notes.advanced(running)  # nothing new: no second note
    clock.now += 31
    notes.advanced(JobStatus("j", "running", done=2, total=3, current="b.md"))
    assert notifier.posts == [(address, "Ingesting `handbook`: 1 of 3 documents done.")]
    assert notifier.updates == [("m1", "Ingesting `handbook`: 2 of 3 documents done (now: b.md).")]
    done = JobStatus("j", "done", done=3, total=3, summary="added 3")
    notes.ended(done)
    notes.ended(done)
    assert notifier.posts[1:] == [(address, "Finished ingesting `handbook`: added 3.")]


def test_job_notes_go_nowhere_without_an_address_and_never_raise() -> None:
    reporter = JobReporter(lambda platform: RecordingNotifier(fail=True), progress_every_s=0)
    assert reporter.notes("x", {}) is None
    assert reporter.notes("x", {"channel": "C9", "thread": "171.2"}) is None  # not a chat address
    notes = reporter.notes("x", ChatAddress(Platform.SLACK, "C1", user="U1").to_notify())
    assert notes is not None
    notes.advanced(JobStatus("j", "running", done=1))
    notes.ended(JobStatus("j", "failed", error="404"))  # the platform refused: logged, not raised


def test_settings_give_the_worker_its_progress_pace(tmp_path: Path) -> None:
    s = Services(Settings(data_dir=tmp_path, _env_file=None, job_progress_every_s=5))  # type: ignore[call-arg]
    assert s.job_reporter.progress_every_s == 5
    assert s.notifier(Platform.SLACK) is None  # no bot token: nothing to post with
