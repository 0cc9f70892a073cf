"""The write memories (airt_operator.write_memory): what the operator last wrote wins over an
index copy older than that write, and only then; a child just applied is not applied again
while the index lags behind it."""

from __future__ import annotations

from typing import Any

from airt_operator.write_memory import ApplyMemory, WriteMemory


def test_nothing_remembered_means_the_seen_status() -> None:
    memory: WriteMemory[str] = WriteMemory()
    assert memory.current("a", {"x": 1}, "5") == {"x": 1}
    assert not memory.unchanged("a", {"x": 1})
    assert "a" not in memory and len(memory) == 0


def test_our_write_wins_over_an_older_copy_and_loses_to_a_newer_one() -> None:
    memory: WriteMemory[tuple[str, str]] = WriteMemory()
    memory.remember(("ns", "a"), {"phase": "ours"}, "10")
    assert memory.current(("ns", "a"), {"phase": "stale"}, "9") == {"phase": "ours"}
    assert memory.current(("ns", "a"), {"phase": "newer"}, "11") == {"phase": "newer"}
    assert memory.current(("ns", "a"), {"phase": "same"}, 10) == {"phase": "same"}
    # A missing resourceVersion in the index's copy is the oldest there is.
    assert memory.current(("ns", "a"), {"phase": "stale"}, None) == {"phase": "ours"}


def test_opaque_versions_never_prefer_the_memory() -> None:
    memory: WriteMemory[str] = WriteMemory()
    memory.remember("a", {"phase": "ours"}, "not-a-number")  # stored as version 0
    assert memory.get("a") is not None and memory.get("a").version == 0  # type: ignore[union-attr]
    assert memory.current("a", {"phase": "seen"}, "3") == {"phase": "seen"}
    memory.remember("b", {"phase": "ours"}, 7)
    assert memory.current("b", {"phase": "seen"}, "abc") == {"phase": "seen"}


def test_unchanged_compares_with_the_last_write_and_forget_drops_it() -> None:
    memory: WriteMemory[str] = WriteMemory()
    status = {"observedGeneration": 1, "conditions": []}
    memory.remember("irt", status)
    assert memory.unchanged("irt", dict(status))
    assert not memory.unchanged("irt", {"observedGeneration": 2})
    memory.forget("irt")
    memory.forget("irt")  # forgetting twice is fine
    assert not memory.unchanged("irt", status) and "irt" not in memory


def test_the_memory_keeps_its_own_copy() -> None:
    memory: WriteMemory[str] = WriteMemory()
    status = {"x": 1}
    memory.remember("a", status)
    status["x"] = 2
    assert memory.unchanged("a", {"x": 1})
    out = memory.current("a", {}, None)
    out["x"] = 3
    assert memory.unchanged("a", {"x": 1})


def _child(version: str) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version}}


def test_a_child_the_index_has_not_shown_since_our_apply_is_not_applied_again() -> None:
    memory = ApplyMemory()
    key = ("team", "m", "Service")
    memory.remember(key, "h1", "120")
    assert memory.index_behind(key, "h1", None)  # missing: watch lag
    assert memory.index_behind(key, "h1", _child("110"))  # the copy before our write
    assert not memory.index_behind(key, "h2", None)  # another manifest: judge it afresh
    assert not memory.index_behind(key, "h1", _child("120"))  # caught up: drift is judged
    # Seen at our version once, a child missing later was deleted after it: apply again.
    assert not memory.index_behind(key, "h1", None)


def test_the_apply_memory_is_trusted_briefly_and_forgotten_with_its_owner() -> None:
    stale = ApplyMemory(budget_s=-1.0)  # already past its budget
    stale.remember(("team", "m", "Service"), "h1", "120")
    assert not stale.index_behind(("team", "m", "Service"), "h1", None)
    memory = ApplyMemory()
    memory.remember(("team", "m", "Service"), "h1", "120")
    memory.remember(("team", "other", "Service"), "h1", "121")
    memory.remember(("team", "x", "Service"), "h1", "not a number")  # unknown: not remembered
    memory.forget("team", "m")
    assert not memory.index_behind(("team", "m", "Service"), "h1", None)
    assert memory.index_behind(("team", "other", "Service"), "h1", None)
    assert not memory.index_behind(("team", "x", "Service"), "h1", None)
