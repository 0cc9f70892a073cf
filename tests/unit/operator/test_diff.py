"""Compare-before-apply: a no-op reconcile must decide "nothing to write"."""

from __future__ import annotations

from airt_operator.reconcile.diff import HASH_ANNOTATION, is_subset, needs_apply, with_hash


def test_defaults_and_other_managers_fields_do_not_count_as_drift() -> None:
    desired = {
        "spec": {
            "replicas": 2,
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
    }
    live = {
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 10,
            "ports": [
                {"port": 53, "protocol": "TCP"},
                {"port": 53, "protocol": "UDP"},
                {"port": 9, "protocol": "TCP"},
            ],
        }
    }
    assert is_subset(desired, live)


def test_hand_edits_are_drift() -> None:
    assert not is_subset({"spec": {"replicas": 2}}, {"spec": {"replicas": 5}})
    assert not is_subset({"a": [1, 2]}, {"a": [2, 1]})
    assert not is_subset({"flag": False}, {"flag": 0})


def test_hash_catches_fields_we_stopped_setting() -> None:
    old = with_hash(
        {"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}, "spec": {"a": 1, "b": 2}}
    )
    new = with_hash({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}, "spec": {"a": 1}})
    live = {**old, "metadata": {**old["metadata"], "uid": "u"}}
    assert not needs_apply(old, live)
    assert needs_apply(new, live)  # b is still live, but the hash says the manifest changed
    assert (
        new["metadata"]["annotations"][HASH_ANNOTATION]
        != old["metadata"]["annotations"][HASH_ANNOTATION]
    )


def test_missing_object_needs_apply() -> None:
    assert needs_apply(
        with_hash({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}}), None
    )
