"""Conversations that survive a reconnect and a restart: memory, disk, LRU, and a disk that fails.

A conversation joins the store with its first saved turn; files left by an earlier run are known at
once and read only when a client resumes them.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from edgevoice import atomic
from edgevoice.protocol import valid_conversation_id
from edgevoice.server.conversations import MIC_CONVERSATION, RESERVED_CONVERSATIONS, ConversationStore

PROMPT = "You are a kitchen assistant."


def store_at(directory: Path, history_turns: int = 4, max_conversations: int = 8) -> ConversationStore:
    return ConversationStore(directory, PROMPT, history_turns, max_conversations)


def write_earlier_run(directory: Path, names: list[str], history: list[list[str]] | None = None) -> None:
    """Conversation files as an earlier run leaves them, oldest first by mtime."""
    directory.mkdir(parents=True, exist_ok=True)
    for age, name in enumerate(names):
        path = directory / f"{name}.json"
        path.write_text(json.dumps({"id": name, "updated": 0, "history": history or [["q", "a"]]}))
        os.utime(path, (1_000_000 + age, 1_000_000 + age))


def saved_in(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


def test_the_microphone_conversation_is_reserved_and_a_valid_id(tmp_path: Path) -> None:
    assert MIC_CONVERSATION in RESERVED_CONVERSATIONS
    assert valid_conversation_id(MIC_CONVERSATION)
    store = store_at(tmp_path)
    opened = store.open(MIC_CONVERSATION)
    assert opened.id == MIC_CONVERSATION
    assert not opened.resumed


def test_a_new_conversation_gets_a_fresh_valid_id(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first, second = store.open(None), store.open(None)
    assert first.id != second.id
    for opened in (first, second):
        assert valid_conversation_id(opened.id)
        assert not opened.resumed
        assert list(opened.conversation.history) == []
        assert opened.conversation.system_prompt == PROMPT
        assert opened.conversation.max_turns == 4
    assert len(store) == 0, "a conversation joins the store with its first saved turn"
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_id_starts_a_new_conversation_under_that_id(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    opened = store.open("kitchen-1")
    assert opened.id == "kitchen-1"
    assert not opened.resumed
    assert list(opened.conversation.history) == []
    assert len(store) == 0
    assert list(tmp_path.iterdir()) == []


def test_an_opened_conversation_that_was_never_saved_is_not_kept(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = store.open("abc")
    first.conversation.remember("hi", "hello")
    again = store.open("abc")
    assert not again.resumed
    assert again.conversation is not first.conversation
    assert list(again.conversation.history) == []
    assert len(store) == 0


def test_resume_from_memory_is_the_same_object(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = store.open("abc")
    first.conversation.remember("hi", "hello")
    assert store.save("abc", first.conversation)
    assert len(store) == 1
    again = store.open("abc")
    assert again.resumed
    assert again.id == "abc"
    assert again.conversation is first.conversation
    assert len(store) == 1


def test_saved_conversation_resumes_from_disk_in_a_fresh_store(tmp_path: Path) -> None:
    store = store_at(tmp_path, history_turns=3)
    opened = store.open("abc")
    for n in range(3):
        opened.conversation.remember(f"said {n}", f"answered {n}")
    assert store.save("abc", opened.conversation)
    assert (tmp_path / "abc.json").is_file()

    fresh = store_at(tmp_path, history_turns=3)
    assert len(fresh) == 1, "a file from an earlier run is known before it is read"
    restarted = fresh.open("abc")
    assert restarted.resumed
    assert restarted.conversation is not opened.conversation
    assert list(restarted.conversation.history) == [(f"said {n}", f"answered {n}") for n in range(3)]
    assert restarted.conversation.system_prompt == PROMPT
    assert len(fresh) == 1


def test_resume_from_disk_is_the_same_object_on_a_second_open(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["abc"], [["q1", "a1"], ["q2", "a2"]])
    store = store_at(tmp_path)
    first = store.open("abc")
    assert first.resumed
    first.conversation.remember("q3", "a3")
    second = store.open("abc")
    assert second.resumed
    assert second.conversation is first.conversation
    assert list(second.conversation.history) == [("q1", "a1"), ("q2", "a2"), ("q3", "a3")]
    assert len(store) == 1


def test_files_are_read_only_when_resumed(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["a", "b"])
    store = store_at(tmp_path)
    (tmp_path / "b.json").write_text(json.dumps({"history": [["changed", "later"]]}))
    assert list(store.open("b").conversation.history) == [("changed", "later")]


def test_history_read_from_disk_is_bounded_to_history_turns(tmp_path: Path) -> None:
    store = store_at(tmp_path, history_turns=10)
    opened = store.open("long")
    for n in range(10):
        opened.conversation.remember(f"q{n}", f"a{n}")
    assert store.save("long", opened.conversation)

    smaller = store_at(tmp_path, history_turns=2).open("long")
    assert smaller.resumed
    assert list(smaller.conversation.history) == [("q8", "a8"), ("q9", "a9")]
    assert smaller.conversation.max_turns == 2

    none_kept = store_at(tmp_path, history_turns=0).open("long")
    assert list(none_kept.conversation.history) == []


def test_saved_file_is_json_with_the_history_and_no_temp_files_are_left(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    opened = store.open("abc")
    opened.conversation.remember("où est la gare ?", "Tout droit.")
    assert store.save("abc", opened.conversation)
    assert store.save("abc"), "saving again replaces the file"
    record = json.loads((tmp_path / "abc.json").read_text(encoding="utf-8"))
    assert record["id"] == "abc"
    assert record["history"] == [["où est la gare ?", "Tout droit."]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc.json"]


def test_save_of_an_unknown_conversation_is_false(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assert not store.save("never-opened")
    assert store.save_failures == 0
    assert list(tmp_path.iterdir()) == []


def test_save_without_the_conversation_of_one_only_opened_is_false(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.open("abc").conversation.remember("q", "a")
    assert not store.save("abc")
    assert store.save_failures == 0
    assert len(store) == 0
    assert list(tmp_path.iterdir()) == []


def test_save_without_the_conversation_writes_the_one_held_in_memory(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    opened = store.open("abc")
    opened.conversation.remember("q1", "a1")
    assert store.save("abc", opened.conversation)
    opened.conversation.remember("q2", "a2")
    assert store.save("abc")
    record = json.loads((tmp_path / "abc.json").read_text(encoding="utf-8"))
    assert record["history"] == [["q1", "a1"], ["q2", "a2"]]


def test_save_without_the_conversation_of_one_not_read_from_disk_is_false(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["abc"])
    before = (tmp_path / "abc.json").read_text()
    store = store_at(tmp_path)
    assert not store.save("abc")
    assert (tmp_path / "abc.json").read_text() == before
    assert store.open("abc").resumed


def test_save_creates_the_directory(tmp_path: Path) -> None:
    store = store_at(tmp_path / "data" / "conversations")
    assert len(store) == 0
    opened = store.open("abc")
    assert store.save("abc", opened.conversation)
    assert (tmp_path / "data" / "conversations" / "abc.json").is_file()


def test_least_recently_used_is_forgotten_from_memory_and_disk(tmp_path: Path) -> None:
    store = store_at(tmp_path, max_conversations=2)
    for name in ("a", "b"):
        opened = store.open(name)
        opened.conversation.remember(f"to {name}", "ok")
        assert store.save(name, opened.conversation)
    store.open("a")  # a is now more recently used than b
    c = store.open("c")
    assert len(store) == 2, "opening a new conversation evicts nothing"
    assert saved_in(tmp_path) == ["a", "b"]
    c.conversation.remember("to c", "ok")
    assert store.save("c", c.conversation)
    assert len(store) == 2
    assert not (tmp_path / "b.json").exists()
    assert saved_in(tmp_path) == ["a", "c"]

    assert store.open("a").resumed
    assert store.open("c").resumed
    gone = store.open("b")
    assert not gone.resumed
    assert list(gone.conversation.history) == []


def test_saving_makes_a_conversation_the_most_recently_used(tmp_path: Path) -> None:
    store = store_at(tmp_path, max_conversations=2)
    held = {}
    for name in ("a", "b"):
        held[name] = store.open(name).conversation
        assert store.save(name, held[name])
    assert store.save("a", held["a"])  # a is now more recently used than b
    assert store.save("c", store.open("c").conversation)
    assert saved_in(tmp_path) == ["a", "c"]
    assert not store.open("b").resumed


def test_a_connection_saving_an_evicted_conversation_keeps_it_again(tmp_path: Path) -> None:
    store = store_at(tmp_path, max_conversations=1)
    a = store.open("a").conversation
    a.remember("q1", "a1")
    assert store.save("a", a)
    assert store.save("b", store.open("b").conversation)
    assert saved_in(tmp_path) == ["b"]
    a.remember("q2", "a2")
    assert store.save("a", a)
    assert saved_in(tmp_path) == ["a"]
    again = store.open("a")
    assert again.resumed
    assert again.conversation is a
    assert list(again.conversation.history) == [("q1", "a1"), ("q2", "a2")]


def test_files_left_by_an_earlier_run_count_against_the_bound(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["old", "middle", "new"])
    store = store_at(tmp_path, max_conversations=2)
    assert len(store) == 2
    assert saved_in(tmp_path) == ["middle", "new"], "the oldest file beyond the bound goes at once"
    store.open("fresh")
    assert saved_in(tmp_path) == ["middle", "new"]
    assert store.open("new").resumed
    assert not store.open("old").resumed


def test_files_left_by_an_earlier_run_are_evicted_oldest_first(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["old", "middle", "new"])
    store = store_at(tmp_path, max_conversations=3)
    assert store.open("old").resumed  # old is now the most recently used
    assert store.save("fresh", store.open("fresh").conversation)
    assert len(store) == 3
    assert saved_in(tmp_path) == ["fresh", "new", "old"]


def test_files_whose_names_are_not_conversation_ids_are_left_alone(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["with space", "dot.json", "abc"])
    store = store_at(tmp_path, max_conversations=1)
    assert len(store) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc.json", "dot.json.json", "with space.json"]
    assert store.open("abc").resumed


def test_connections_that_never_speak_do_not_push_saved_conversations_out(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["earlier"], [["from before", "yes"]])
    store = store_at(tmp_path, max_conversations=3)
    kept = store.open("kept")
    kept.conversation.remember("q", "a")
    assert store.save("kept", kept.conversation)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}

    for n in range(100):
        assert not store.open(f"silent-{n}").resumed
    for _ in range(100):
        assert not store.open(None).resumed

    assert len(store) == 2
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before
    again = store.open("kept")
    assert again.resumed
    assert again.conversation is kept.conversation
    earlier = store.open("earlier")
    assert earlier.resumed
    assert list(earlier.conversation.history) == [("from before", "yes")]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[]",
        "null",
        '{"id": "abc"}',
        '{"history": 5}',
        '{"history": [["only one"]]}',
        '{"history": [1, 2]}',
        '{"history": [["a", "b", "c"]]}',
    ],
)
def test_a_corrupted_file_starts_a_new_conversation(tmp_path: Path, content: str) -> None:
    (tmp_path / "abc.json").write_text(content)
    store = store_at(tmp_path)
    assert len(store) == 1
    opened = store.open("abc")
    assert opened.id == "abc"
    assert not opened.resumed
    assert list(opened.conversation.history) == []
    assert len(store) == 0, "an unreadable file leaves the store"
    again = store.open("abc")
    assert not again.resumed
    assert again.conversation is not opened.conversation


def test_a_file_removed_after_start_starts_a_new_conversation(tmp_path: Path) -> None:
    write_earlier_run(tmp_path, ["abc"])
    store = store_at(tmp_path)
    (tmp_path / "abc.json").unlink()
    opened = store.open("abc")
    assert not opened.resumed
    assert list(opened.conversation.history) == []
    assert len(store) == 0


def test_a_file_that_is_not_utf8_starts_a_new_conversation(tmp_path: Path) -> None:
    (tmp_path / "abc.json").write_bytes(b'{"history": [["\xff\xfe", "x"]]}')
    store = store_at(tmp_path)
    opened = store.open("abc")
    assert not opened.resumed
    assert len(store) == 0


def test_a_corrupted_file_is_replaced_on_the_next_save(tmp_path: Path) -> None:
    (tmp_path / "abc.json").write_text("{garbage")
    store = store_at(tmp_path)
    opened = store.open("abc")
    assert not opened.resumed
    opened.conversation.remember("q", "a")
    assert store.save("abc", opened.conversation)
    assert len(store) == 1
    resumed = store_at(tmp_path).open("abc")
    assert resumed.resumed
    assert list(resumed.conversation.history) == [("q", "a")]


@pytest.mark.parametrize("bad", ["", "a" * 65, "../escape", "a/b", "with space", "dot.json", "é"])
def test_an_invalid_id_is_a_value_error(tmp_path: Path, bad: str) -> None:
    store = store_at(tmp_path)
    with pytest.raises(ValueError, match="invalid conversation id"):
        store.open(bad)
    assert len(store) == 0
    assert list(tmp_path.iterdir()) == []


def test_directory_that_is_a_file_keeps_the_conversation_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "conversations"
    blocker.write_text("I am a file")
    store = store_at(blocker)
    assert len(store) == 0
    opened = store.open("abc")
    opened.conversation.remember("q", "a")
    assert not store.save("abc", opened.conversation)
    assert store.save_failures == 1
    assert len(store) == 1
    again = store.open("abc")
    assert again.resumed
    assert again.conversation is opened.conversation
    assert list(again.conversation.history) == [("q", "a")]
    assert blocker.read_text() == "I am a file"


def test_directory_under_a_regular_file_counts_each_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = store_at(blocker / "conversations")
    opened = store.open(None)
    assert not opened.resumed
    opened.conversation.remember("q1", "a1")
    assert not store.save(opened.id, opened.conversation)
    opened.conversation.remember("q2", "a2")
    assert not store.save(opened.id)
    assert store.save_failures == 2
    assert list(store.open(opened.id).conversation.history) == [("q1", "a1"), ("q2", "a2")]


def test_a_full_disk_leaves_no_temp_file_and_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_at(tmp_path)
    opened = store.open("abc")
    opened.conversation.remember("q1", "a1")
    assert store.save("abc", opened.conversation)
    before = (tmp_path / "abc.json").read_text()

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)  # the data reached no disk
    opened.conversation.remember("q2", "a2")
    assert not store.save("abc", opened.conversation)
    assert store.save_failures == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc.json"]
    assert (tmp_path / "abc.json").read_text() == before
    assert list(store.open("abc").conversation.history) == [("q1", "a1"), ("q2", "a2")]
