"""commands: query validation, command ids, and add / replace / stop of running commands."""

import re

import pytest

from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.pipeline.commands import (
    CommandAction,
    CommandBook,
    CommandRequest,
    CommandState,
    Verdict,
    sanitize_query,
    select_cameras,
)

ADD, REPLACE, STOP, STOP_ALL = CommandAction.ADD, CommandAction.REPLACE, CommandAction.STOP, CommandAction.STOP_ALL
ACCEPTED, REJECTED, STOPPED = CommandState.ACCEPTED, CommandState.REJECTED, CommandState.STOPPED


def add(book, command_id, query="the red mug", action=ADD, mode=GroundingMode.TRACK):
    return book.apply(CommandRequest(command_id, query, mode, action))


def running_ids(book):
    return [c.id for c in book.running()]


def book_with(*ids, **kwargs):
    book = CommandBook(**kwargs)
    for command_id in ids:
        [event] = add(book, command_id, f"query {command_id}")
        assert event.state is ACCEPTED
    return book


# ----------------------------------------------------------------- queries


def test_sanitize_strips_control_characters_and_collapses_whitespace():
    clean, verdict = sanitize_query("  the\x00 red\t\tmug\r\non\x7fthe \x1b table  ", max_chars=100)
    assert verdict is Verdict.OK
    assert clean == "the red mug on the table"


def test_accepted_command_carries_the_sanitized_query():
    book = CommandBook()
    [event] = add(book, "mug", "  red\n\n mug ")
    assert (event.state, event.id, event.query) == (ACCEPTED, "mug", "red mug")
    assert book.running()[0].query == "red mug"


@pytest.mark.parametrize("query", ["", "   ", "\t\r\n", "\x00\x01\x7f", " \x1b "])
def test_empty_or_whitespace_only_query_is_rejected(query):
    book = CommandBook()
    [event] = add(book, "x", query)
    assert event.state is REJECTED
    assert "empty" in event.reason
    assert book.running() == []


def test_query_at_the_limit_is_accepted():
    book = CommandBook(max_query_chars=20)
    [event] = add(book, "x", "a" * 20)
    assert event.state is ACCEPTED
    assert event.query == "a" * 20


def test_over_long_query_is_rejected_not_truncated_and_reason_gives_its_length():
    book = CommandBook(max_query_chars=20)
    [event] = add(book, "x", "b" * 33)
    assert event.state is REJECTED
    assert "33" in event.reason and "20" in event.reason
    assert book.running() == []
    assert sanitize_query("b" * 33, 20) == ("", Verdict.TOO_LONG)


def test_whitespace_collapse_counts_towards_the_limit_after_cleaning():
    book = CommandBook(max_query_chars=10)
    [event] = add(book, "x", "red" + " " * 30 + "mug")
    assert (event.state, event.query) == (ACCEPTED, "red mug")


def test_megabyte_query_is_rejected_with_a_short_preview():
    book = CommandBook(max_query_chars=512)
    huge = "pick up the cup " * 65_536  # 1 MiB
    [event] = add(book, "x", huge)
    assert event.state is REJECTED
    assert str(len(huge)) in event.reason
    assert len(event.query) <= 83 and event.query.endswith("...")  # 80 characters and an ellipsis, not 1 MB
    assert book.running() == []


# ----------------------------------------------------------------- ids


def test_empty_ids_get_unique_generated_ids():
    book = CommandBook()
    ids = [add(book, "", f"query {k}")[0].id for k in range(5)]
    assert all(re.fullmatch(r"cmd-\d+", i) for i in ids)
    assert len(set(ids)) == 5
    assert sorted(running_ids(book)) == sorted(ids)


def test_generated_id_does_not_collide_with_a_user_id():
    book = CommandBook()
    add(book, "cmd-1", "the user's own command")
    [event] = add(book, "", "a generated one")
    assert event.state is ACCEPTED
    assert event.id != "cmd-1"
    assert sorted(running_ids(book)) == sorted(["cmd-1", event.id])


@pytest.mark.parametrize(
    "bad_id",
    ["has space", "x" * 65, "semi;colon", "quote'", "ünïcode", "tab\there", "new\nline"],
)
def test_invalid_ids_are_rejected(bad_id):
    book = CommandBook()
    [event] = add(book, bad_id)
    assert event.state is REJECTED
    assert "1-64 characters" in event.reason
    assert book.running() == []


def test_allowed_id_characters_are_accepted():
    book = CommandBook()
    [event] = add(book, "arm_1/gripper-cam:target.v2")
    assert event.state is ACCEPTED
    [event] = add(book, "y" * 64)
    assert event.state is ACCEPTED


def test_id_with_trailing_newline_is_rejected():
    book = CommandBook()
    [event] = add(book, "mug\n")
    assert event.state is REJECTED
    assert book.running() == []


# ----------------------------------------------------------------- add / replace / stop


def test_add_runs_alongside_others():
    book = book_with("a", "b")
    [event] = add(book, "c")
    assert event.state is ACCEPTED
    assert running_ids(book) == ["a", "b", "c"]


def test_replace_stops_every_other_command_then_accepts():
    book = book_with("a", "b")
    events = add(book, "c", action=REPLACE)
    assert [(e.state, e.id) for e in events] == [(STOPPED, "a"), (STOPPED, "b"), (ACCEPTED, "c")]
    assert events[0].query == "query a"
    assert running_ids(book) == ["c"]


def test_rejected_replace_stops_nothing():
    book = book_with("a", "b")
    [event] = add(book, "c", query="   ", action=REPLACE)
    assert event.state is REJECTED
    assert running_ids(book) == ["a", "b"]


def test_same_id_replaces_the_running_command():
    book = book_with("mug")
    [old] = book.running()
    events = add(book, "mug", "the blue mug")
    assert [(e.state, e.id) for e in events] == [(STOPPED, "mug"), (ACCEPTED, "mug")]
    [new] = book.running()
    assert new.query == "the blue mug"
    assert new.generation != old.generation
    assert book.is_current(new) is True
    assert book.is_current(old) is False


def test_rejected_resend_of_a_running_id_keeps_the_old_command():
    book = book_with("mug")
    [old] = book.running()
    [event] = add(book, "mug", "")
    assert event.state is REJECTED
    assert book.is_current(old) is True


def test_stop_unknown_id_is_rejected_naming_the_running_ids():
    book = book_with("mug", "bottle")
    [event] = book.apply(CommandRequest("cup", "", action=STOP))
    assert event.state is REJECTED
    assert "'cup'" in event.reason
    assert "mug" in event.reason and "bottle" in event.reason
    assert running_ids(book) == ["mug", "bottle"]


def test_stop_stops_only_the_named_command():
    book = book_with("mug", "bottle")
    [mug] = [c for c in book.running() if c.id == "mug"]
    [event] = book.apply(CommandRequest("mug", "ignored", action=STOP))
    assert (event.state, event.id, event.query) == (STOPPED, "mug", "query mug")
    assert running_ids(book) == ["bottle"]
    assert book.is_current(mug) is False


def test_stop_all_stops_every_command():
    book = book_with("a", "b", "c")
    events = book.apply(CommandRequest("", "", action=STOP_ALL))
    assert sorted((e.state, e.id) for e in events) == [(STOPPED, "a"), (STOPPED, "b"), (STOPPED, "c")]
    assert book.running() == []
    assert book.next_turn() is None


@pytest.mark.parametrize(("mode", "action"), [(7, ADD), (GroundingMode.POINT, 9), (-1, ADD)])
def test_unknown_mode_or_action_is_rejected_and_changes_nothing(mode, action):
    book = book_with("a")
    [event] = book.apply(CommandRequest("b", "the red mug", mode, action))
    assert event.state is REJECTED
    assert "unknown" in event.reason
    assert running_ids(book) == ["a"]


def test_point_mode_is_kept_on_the_command():
    book = CommandBook()
    add(book, "p", mode=GroundingMode.POINT)
    assert book.running()[0].mode is GroundingMode.POINT


def test_max_commands_refuses_one_more_but_allows_resending_a_running_id():
    book = book_with("a", "b", max_commands=2)
    [event] = add(book, "c")
    assert event.state is REJECTED
    assert "2" in event.reason
    assert running_ids(book) == ["a", "b"]
    assert add(book, "b", "a new query for b")[-1].state is ACCEPTED  # replacing is not one more
    book.apply(CommandRequest("a", "", action=STOP))
    assert add(book, "c")[-1].state is ACCEPTED


# ----------------------------------------------------------------- round robin


def test_next_turn_visits_every_command_round_robin():
    book = book_with("a", "b", "c")
    turns = [book.next_turn().id for _ in range(6)]
    assert sorted(turns[:3]) == ["a", "b", "c"]
    assert sorted(turns[3:]) == ["a", "b", "c"]
    assert turns[:3] == turns[3:]


def test_next_turn_never_returns_a_stopped_command():
    book = book_with("a", "b", "c")
    book.next_turn()
    book.apply(CommandRequest("b", "", action=STOP))
    turns = {book.next_turn().id for _ in range(4)}
    assert turns == {"a", "c"}


def test_next_turn_on_empty_book_is_none():
    assert CommandBook().next_turn() is None


def test_stop_all_with_nothing_running_is_still_answered():
    [event] = CommandBook().apply(CommandRequest("", "", action=STOP_ALL))
    assert event.state is CommandState.STOPPED and event.id == "" and "no command was running" in event.reason


def test_unknown_action_echoes_a_cleaned_query():
    [event] = CommandBook().apply(CommandRequest("", "red\x00\nmug", action=9))
    assert event.state is CommandState.REJECTED and event.query == "red mug"


# ----------------------------------------------------------------- cameras


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("", ("head",)),
        ("  ", ("head",)),
        ("wrist", ("wrist",)),
        ("wrist, head,wrist", ("wrist", "head")),
        ("*", ("head", "wrist", "base")),
    ],
)
def test_select_cameras(spec, expected):
    assert select_cameras(spec, ("head", "wrist", "base")) == expected


@pytest.mark.parametrize("spec", ["tail", "head,tail", ","])
def test_select_cameras_refuses_unknown_names_listing_the_known_ones(spec):
    with pytest.raises(ValueError, match=r"unknown camera .*\(cameras: head, wrist\)"):
        select_cameras(spec, ("head", "wrist"))


def test_a_command_runs_on_the_cameras_it_names_and_each_camera_takes_its_own_turns():
    book = CommandBook(cameras=("head", "wrist"))
    [on_head] = book.apply(CommandRequest("a", "red", action=ADD))
    [on_both] = book.apply(CommandRequest("b", "blue", action=ADD, camera="*"))
    [on_wrist] = book.apply(CommandRequest("c", "green", action=ADD, camera="wrist"))
    assert (on_head.cameras, on_both.cameras, on_wrist.cameras) == (("head",), ("head", "wrist"), ("wrist",))
    assert [c.id for c in book.running("head")] == ["a", "b"]
    assert [c.id for c in book.running("wrist")] == ["b", "c"]
    assert {book.next_turn("wrist").id for _ in range(4)} == {"b", "c"}
    assert [book.next_turn("head").id for _ in range(2)] == ["a", "b"], "wrist's turns do not move head's"
    [stopped] = book.apply(CommandRequest("b", "", action=STOP))
    assert stopped.state is STOPPED and stopped.cameras == ("head", "wrist"), "a stop acts on every camera"


def test_a_command_naming_an_unknown_camera_is_rejected_and_nothing_changes():
    book = CommandBook(cameras=("head", "wrist"))
    add(book, "a")
    [event] = book.apply(CommandRequest("a", "blue", action=REPLACE, camera="tail"))
    assert event.state is REJECTED and "unknown camera 'tail'" in event.reason
    assert running_ids(book) == ["a"]
