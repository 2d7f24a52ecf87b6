"""Ingest progress and results are posted by the worker, not watched from the web process.

A real ``supportbot worker`` takes jobs queued through CeleryIngestQueue with a chat address
(as the Slack and Teams adapters queue them) and reports to the fake Slack Web API and the
fake Bot Framework connector through the real SDKs. No web process runs at all: a restart
of it cannot lose a job's notes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.celery_queue import CeleryIngestQueue
from adapters.factory import Services
from bot.types import ChatAddress, Platform
from tests.fakes.slack_server import FakeSlack
from tests.fakes.teams_connector import BOT_ID, FakeConnector
from tests.test_workers import Workers, wait_for
from tests.test_workers import env as env  # noqa: F401 - the worker environment fixture
from tests.test_workers import services as services  # noqa: F401
from tests.test_workers import workers as workers  # noqa: F401

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("no_proxy")]

DOCS = {
    "vpn.md": "# VPN\n\nOpen GlobalProtect and sign in with your company account.\n",
    "leave.md": "# Leave\n\nParental leave is sixteen weeks.\n",
    "laptop.md": "# Laptops\n\nA broken laptop is replaced within two working days.\n",
}


@pytest.fixture
def chat_env(env: dict[str, str], slack: FakeSlack) -> dict[str, str]:  # noqa: F811
    env.update({
        "SUPPORTBOT_SLACK_BOT_TOKEN": "xoxb-worker-test",
        "SUPPORTBOT_SLACK_API_URL": slack.api_url,
        "SUPPORTBOT_JOB_PROGRESS_EVERY_S": "0",  # every progress step may be shown
    })
    return env


@pytest.fixture
def queue(services: Services) -> CeleryIngestQueue:  # noqa: F811
    q = services.ingest_queue
    assert isinstance(q, CeleryIngestQueue)
    return q


@pytest.fixture
def docs(data_dir: Path) -> Iterator[Path]:
    folder = data_dir / "handbook"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    yield folder


def test_the_worker_posts_slack_progress_in_one_message_and_the_result(
    chat_env: dict[str, str], workers: Workers, queue: CeleryIngestQueue, slack: FakeSlack, docs: Path  # noqa: F811
) -> None:
    workers.start()
    address = ChatAddress(Platform.SLACK, "C42", user="UADMIN", team="T1")  # /ingest typed in a channel
    job = queue.enqueue_ingest(str(docs), "slack:UADMIN", address.to_notify())
    assert wait_for(queue, job).state == "done"
    # Not in the channel (everyone would see the bookkeeping): a direct message to the requester.
    result = slack.wait_for(
        lambda: [c for c in slack.calls_to("chat.postMessage") if "Finished ingesting" in c.args["text"]]
    )
    assert result[0].args["channel"] == "UADMIN" and "added 3" in result[0].args["text"]
    progress = [c for c in slack.calls_to("chat.postMessage") if c.args["text"].startswith("Ingesting")]
    assert len(progress) == 1 and progress[0].args["channel"] == "UADMIN"  # one progress message ...
    assert " of 3 documents done" in progress[0].args["text"]
    updates = [c for c in slack.calls_to("chat.update") if c.args["text"].startswith("Ingesting")]
    assert all(u.args["ts"] == slack.messages["UADMIN"][0]["ts"] for u in updates)  # ... updated in place
    assert progress[0].at < result[0].at


def test_the_worker_reports_a_failed_slack_ingest_in_the_dm_it_came_from(
    chat_env: dict[str, str], workers: Workers, queue: CeleryIngestQueue, slack: FakeSlack  # noqa: F811
) -> None:
    workers.start()
    address = ChatAddress(Platform.SLACK, "D77", user="UADMIN")
    job = queue.enqueue_ingest("/etc/hostname", "slack:UADMIN", address.to_notify())
    assert wait_for(queue, job).state == "failed"
    [failed] = slack.wait_for(
        lambda: [c for c in slack.calls_to("chat.postMessage")
                 if c.args["channel"] == "D77" and not c.args["text"].startswith("Ingesting")]
    )
    assert failed.args["text"].startswith("Ingest of `/etc/hostname` failed") and "only files under" in failed.args["text"]


def test_the_worker_posts_teams_progress_and_the_result_proactively_under_the_command(
    chat_env: dict[str, str], workers: Workers, queue: CeleryIngestQueue, connector: FakeConnector, docs: Path  # noqa: F811
) -> None:
    workers.start()
    conversation = "19:general@thread.tacv2;messageid=1700000000001"
    address = ChatAddress(
        Platform.TEAMS, conversation, user="29:admin-1", thread="1700000000001",
        service_url=connector.service_url, bot=BOT_ID, tenant="tenant-1", channel="msteams",
    )
    job = queue.enqueue_ingest(str(docs), "teams:aad-admin-1", address.to_notify())
    assert wait_for(queue, job).state == "done"
    final = connector.wait_for(
        lambda calls: next((c for c in calls if c.conversation == conversation
                            and "Finished ingesting" in str(c.body.get("text"))), None)
    )
    assert "added 3" in final.body["text"] and final.activity_id == "1700000000001"  # threaded under the command
    calls = connector.in_conversation(conversation)
    posted = [c for c in calls if c.method == "POST" and str(c.body.get("text")).startswith("Ingesting")]
    assert len(posted) == 1 and "of 3 documents done" in posted[0].body["text"]
    updates = [c for c in calls if c.method == "PUT"]
    assert all(u.activity_id == posted[0].assigned_id for u in updates)  # progress updated in place


def test_a_job_without_a_chat_address_posts_nothing(
    chat_env: dict[str, str], workers: Workers, queue: CeleryIngestQueue, slack: FakeSlack, docs: Path  # noqa: F811
) -> None:
    workers.start()
    before = len(slack.calls_to("chat.postMessage"))
    job = queue.enqueue_ingest(str(docs), "cli", {})
    assert wait_for(queue, job).state == "done"
    assert len(slack.calls_to("chat.postMessage")) == before
