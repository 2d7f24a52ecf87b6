"""Bounded in-process memory for the Teams bot: recent turns per conversation and which
reply carries which answer.

In memory on purpose: both are conveniences (a follow-up without context still gets an
answer; a vote on a forgotten reply is logged and dropped), and the bounds keep a busy
tenant from growing the process. Run one web worker per bot, or put these behind Redis, if
votes through reactions or Teams' own buttons must survive restarts; Adaptive Card votes
carry the answer id themselves and never need this map.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from bot.types import Turn


class ConversationHistory:
    """The last ``turns`` turns of at most ``conversations`` conversations (least recent evicted)."""

    def __init__(self, turns: int = 6, conversations: int = 2_000) -> None:
        self._turns = turns
        self._max = conversations
        self._data: OrderedDict[str, deque[Turn]] = OrderedDict()

    def get(self, conversation: str) -> tuple[Turn, ...]:
        """The remembered turns, oldest first (empty for an unknown conversation)."""
        turns = self._data.get(conversation)
        if turns is None:
            return ()
        self._data.move_to_end(conversation)
        return tuple(turns)

    def add(self, conversation: str, question: str, answer: str) -> None:
        """Remember one question and its answer."""
        turns = self._data.setdefault(conversation, deque(maxlen=self._turns))
        turns.extend((Turn("user", question), Turn("assistant", answer)))
        self._data.move_to_end(conversation)
        while len(self._data) > self._max:
            self._data.popitem(last=False)


class ReplyIndex:
    """Reply activity id → answer id, for votes that only name the reply (reactions, Teams'
    own feedback buttons). Keeps the ``size`` most recent replies."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._data: OrderedDict[str, str] = OrderedDict()

    def remember(self, activity_id: str, answer_id: str) -> None:
        if not activity_id:
            return
        self._data[activity_id] = answer_id
        self._data.move_to_end(activity_id)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def answer_for(self, activity_id: str) -> str | None:
        return self._data.get(activity_id)
