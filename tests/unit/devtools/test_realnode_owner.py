"""One real node per machine: a second local cluster's node refuses to start beside the first
(their addresses and bridge are the same), naming the running one and how to stop it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from airt_dev import realnode, realnode_preflight
from airt_dev import realnode_config as cfg
from airt_dev.realnode import RealNode, RealNodeUnavailableError


def _node(root: Path, name: str) -> RealNode:
    layout = cfg.Layout(workdir=root / "realnode" / name, images_root=root / "containerd-root")
    cluster: Any = object()  # never reached: up() refuses before it touches the cluster
    return RealNode(cluster, layout)


def test_a_second_cluster_does_not_take_over_a_running_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realnode, "CACHE_ROOT", tmp_path)
    monkeypatch.setattr(realnode_preflight, "check", lambda: [])
    running = tmp_path / "realnode" / "airt-dev"
    running.mkdir(parents=True)
    (running / "kubelet.pid").write_text(str(os.getpid()))  # a live process
    mine = _node(tmp_path, "airt")
    assert mine.foreign_node() == "airt-dev"
    with pytest.raises(RealNodeUnavailableError) as err:
        mine.up()
    assert "AIRT_CLUSTER_NAME=airt-dev airt-dev down" in str(err.value)


def test_a_stale_pid_file_is_not_a_running_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realnode, "CACHE_ROOT", tmp_path)
    stale = tmp_path / "realnode" / "airt-dev"
    stale.mkdir(parents=True)
    (stale / "kubelet.pid").write_text("999999999")  # no such process
    own = tmp_path / "realnode" / "airt"
    own.mkdir(parents=True)
    (own / "kubelet.pid").write_text(str(os.getpid()))  # the node's own kubelet is not foreign
    assert _node(tmp_path, "airt").foreign_node() is None
