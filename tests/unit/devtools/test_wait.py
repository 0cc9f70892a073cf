"""The one polling helper (airt_dev.wait): what it returns, ignores, reports and gives up on."""

from __future__ import annotations

import itertools

import pytest

from airt_dev.wait import WaitTimeoutError, wait_for, wait_for_async


def test_returns_the_first_truthy_value() -> None:
    values = iter([0, None, [], "ready"])
    assert wait_for(lambda: next(values), 5, "a value", interval_s=0) == "ready"


def test_ignored_errors_mean_not_yet_and_the_last_is_reported() -> None:
    calls = itertools.count()

    def probe() -> str:
        if next(calls) < 3:
            raise ConnectionRefusedError("not listening")
        return "up"

    assert wait_for(probe, 5, "a port", interval_s=0, ignore=(OSError,)) == "up"

    def refused() -> str:
        raise ConnectionRefusedError("not listening")

    with pytest.raises(WaitTimeoutError, match="ConnectionRefusedError"):
        wait_for(refused, 0.05, "never", interval_s=0.01, ignore=(OSError,))


def test_errors_not_ignored_propagate() -> None:
    with pytest.raises(KeyError):
        wait_for(lambda: {}["missing"], 5, "a key", interval_s=0)


def test_abort_gives_up_at_once_with_its_reason() -> None:
    with pytest.raises(WaitTimeoutError, match="process exited with 3"):
        wait_for(lambda: False, 60, "a worker", abort=lambda: "process exited with 3")


def test_timeout_names_what_and_the_last_value() -> None:
    with pytest.raises(WaitTimeoutError, match=r"waiting for the answer; last: 0"):
        wait_for(lambda: 0, 0.05, "the answer", interval_s=0.01)


async def test_async_variant_polls_in_a_thread() -> None:
    values = iter([False, False, True])
    assert await wait_for_async(lambda: next(values), 5, "a flag", interval_s=0) is True
