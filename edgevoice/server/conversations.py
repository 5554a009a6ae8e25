"""Conversations clients can resume: kept in memory, saved to disk after each turn, least recently used forgotten.

A client that reconnects (a dropped Wi-Fi link, a restarted daemon) sends the id it was given and
carries on with the same history. Each conversation is one small JSON file, written atomically;
when the disk is full the conversation stays in memory and the failure is logged, nothing is lost
from the session in progress.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgevoice.atomic import write_atomic
from edgevoice.conversation import Conversation
from edgevoice.protocol import valid_conversation_id

_log = logging.getLogger(__name__)
MIC_CONVERSATION = "mic"
"""The box's own microphone conversation."""
RESERVED_CONVERSATIONS = frozenset({MIC_CONVERSATION})
"""Ids a network client may not open."""


@dataclass
class Opened:
    id: str
    conversation: Conversation
    resumed: bool


class ConversationStore:
    """Every conversation with a saved turn, most recently used last; at most max_conversations of them.

    Conversations saved by earlier runs are known by their files and read only when resumed.
    """

    def __init__(self, directory: Path, system_prompt: str, history_turns: int, max_conversations: int) -> None:
        self.directory = directory
        self._system_prompt = system_prompt
        self._history_turns = history_turns
        self._max = max_conversations
        self._known: collections.OrderedDict[str, Conversation | None] = collections.OrderedDict()
        """None: saved on disk, not read yet."""
        self._owners: dict[str, str] = {}
        """The paired device each conversation belongs to ("" for none: auth off, or a token client)."""
        self.save_failures = 0
        try:
            files = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        except OSError:
            files = []
        for path in files:
            if valid_conversation_id(path.stem):
                self._known[path.stem] = None
        self._evict()

    def __len__(self) -> int:
        return len(self._known)

    def open(self, conversation_id: str | None, owner: str = "") -> Opened:
        """The conversation with this id (from memory, then disk), or a new one (under this id if given).

        A new conversation joins the store with its first saved turn, so connections that never
        speak do not push saved conversations out. A conversation belongs to the device (owner) that
        made it: another gets a new conversation under a new id, never a look at the history.
        """
        opened = self._open(conversation_id)
        if opened.resumed and self._owners.get(opened.id, "") != owner:
            _log.warning("conversation %s belongs to another device: starting a new one", opened.id)
            opened = Opened(uuid.uuid4().hex, Conversation(self._system_prompt, self._history_turns), False)
        return opened

    def _open(self, conversation_id: str | None) -> Opened:
        if conversation_id is not None and not valid_conversation_id(conversation_id):
            raise ValueError(f"invalid conversation id {conversation_id!r}")
        if conversation_id is None:
            conversation_id = uuid.uuid4().hex
        if conversation_id not in self._known:
            return Opened(conversation_id, Conversation(self._system_prompt, self._history_turns), False)
        found = self._known[conversation_id] or self._load(conversation_id)
        if found is None:
            del self._known[conversation_id]
            return Opened(conversation_id, Conversation(self._system_prompt, self._history_turns), False)
        self._known[conversation_id] = found
        self._known.move_to_end(conversation_id)
        return Opened(conversation_id, found, True)

    def save(self, conversation_id: str, conversation: Conversation | None = None, owner: str | None = None) -> bool:
        """Write the conversation's history to disk; False (and a log line) when it could not be written.

        A connection passes the conversation it holds, so one evicted meanwhile is kept again.
        """
        if owner is not None:
            self._owners[conversation_id] = owner
        if conversation is not None:
            self._known[conversation_id] = conversation
            self._known.move_to_end(conversation_id)
            self._evict()
        conversation = self._known.get(conversation_id)
        if conversation is None:
            return False
        record = {
            "id": conversation_id,
            "owner": self._owners.get(conversation_id, ""),
            "updated": time.time(),
            "history": [list(pair) for pair in conversation.history],
        }
        path = self._path(conversation_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(record, ensure_ascii=False).encode("utf-8"), 0o600)
        except OSError as err:
            self.save_failures += 1
            _log.warning("conversation %s kept in memory only: cannot write %s (%s)", conversation_id, path, err)
            return False
        return True

    def _path(self, conversation_id: str) -> Path:
        return self.directory / f"{conversation_id}.json"

    def _load(self, conversation_id: str) -> Conversation | None:
        path = self._path(conversation_id)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            history = [(str(said), str(answered)) for said, answered in record["history"]]
            self._owners[conversation_id] = str(record.get("owner", ""))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            _log.warning("ignoring unreadable conversation file %s: %s", path, err)
            return None
        conversation = Conversation(self._system_prompt, self._history_turns)
        for said, answered in history:
            conversation.remember(said, answered)
        return conversation

    def _evict(self) -> None:
        while len(self._known) > self._max:
            old_id, _ = self._known.popitem(last=False)
            self._owners.pop(old_id, None)
            with contextlib.suppress(OSError):
                self._path(old_id).unlink()
