"""Showing an answer in Teams: the core's answer stream as async events, shown while it is
written (Teams streaming in personal chats, an updated message in channels and group chats),
then the final card. When to show progress is the core's :class:`bot.conversation.Cadence`;
what to show, :mod:`adapters.teams.render`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterable

from adapters.teams import render
from adapters.teams.protocol import TurnIO
from bot.conversation import Cadence
from bot.types import Answer, Question

log = logging.getLogger(__name__)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class Reply:
    """Shows a growing answer, then the final card. Subclasses pick Teams streaming or updates."""

    def __init__(self, turn: TurnIO, cadence: Cadence) -> None:
        self.turn = turn
        self.cadence = cadence
        self.broken = False

    async def progress(self, text: str) -> None:
        if self.broken or not self.cadence.due():
            return
        try:
            await self.push(text)
        except Exception as exc:  # noqa: BLE001 - a failed partial must not lose the answer
            log.warning("teams: streaming update failed (%s); sending the answer when done", exc)
            self.broken = True

    async def push(self, text: str) -> None:
        raise NotImplementedError

    async def finish(self, answer: Answer) -> list[str]:
        raise NotImplementedError


class TeamsStream(Reply):
    """Teams streaming (personal chats): typing activities with ``streaminfo``, then a final message."""

    sequence = 0
    stream_id = ""

    async def push(self, text: str) -> None:
        self.sequence += 1
        sent = await self.turn.send(render.stream_chunk(text, self.sequence, self.stream_id))
        self.stream_id = self.stream_id or sent

    async def finish(self, answer: Answer) -> list[str]:
        if not self.stream_id or self.broken:
            return [await self.turn.send(render.answer_activity(answer))]
        sent = await self.turn.send(render.stream_final(answer, self.stream_id))
        return [self.stream_id, sent]


class UpdatedMessage(Reply):
    """Channels and group chats: one message, updated as the answer grows, then replaced by the card."""

    reply_id = ""

    async def push(self, text: str) -> None:
        if self.reply_id:
            await self.turn.update(self.reply_id, render.partial_activity(text))
        else:
            self.reply_id = await self.turn.send(render.partial_activity(text))

    async def finish(self, answer: Answer) -> list[str]:
        if self.reply_id:
            try:
                await self.turn.update(self.reply_id, render.answer_activity(answer))
                return [self.reply_id]
            except Exception as exc:  # noqa: BLE001 - fall back to a new message
                log.warning("teams: could not update the partial reply (%s); sending a new one", exc)
        return [await self.turn.send(render.answer_activity(answer))]


async def answer_events(
stream: Callable[[Question], Iterable[str | Answer]], question: Question
) -> AsyncGenerator[str | Answer, None]:
    """The core's answer stream (blocking: retrieval, models) run in a thread, as async events."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def work() -> None:
        try:
            for event in stream(question):
                loop.call_soon_threadsafe(queue.put_nowait, event)
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop and re-raised there
            loop.call_soon_threadsafe(queue.put_nowait, _Failed(exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    running = loop.run_in_executor(None, work)
    try:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, str | Answer)
            yield item
    finally:
        await running
