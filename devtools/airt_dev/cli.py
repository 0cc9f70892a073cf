"""The `airt-dev` command: the local development cluster (kwok), its real node and `make dev`.

Called by the Makefile (`make cluster-up`, `make dev`, `make dev-down`) and by hand. Developer
tooling only: no image ships it.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import typer

app = typer.Typer(
    name="airt-dev",
    help="A local control plane with fake GPU nodes (kwok) and a real node.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"airt-dev {version('airt-dev')}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """A local control plane with fake GPU nodes (kwok) and a real node."""


@app.command("up")
def dev_up(
    nodepool: Path = typer.Option(
        None, help="Node pool YAML (default: tools/cluster/nodepool.yaml)."
    ),
    real_node: bool = typer.Option(
        True,
        "--real-node/--no-real-node",
        help="Also join a real node (containerd + kubelet) when this machine can host one.",
    ),
) -> None:
    """Start (or reuse) the local cluster; the last line printed is KUBECONFIG=<path>.

    The kwok fleet always comes up. The real node joins when the machine has what it needs;
    otherwise what is missing and how to get it is printed, and the fake-node cluster stays.
    """
    from airt_dev import realnode_preflight as preflight
    from airt_dev.cluster import ClusterError, ClusterManager
    from airt_dev.realnode import IMAGES_JSON, RealNode, default_layout, set_real_node_only

    manager = ClusterManager.from_env()
    if nodepool is not None:
        manager.nodepool = nodepool
    try:
        started = manager.up()
    except ClusterError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    c = manager.cluster()
    state = "started" if started else "already up"
    typer.echo(f"cluster {c.name!r} {state}; kubectl: {c.bin_dir / 'kubectl'}")
    if real_node:
        missing = preflight.check()
        if missing:
            typer.echo(f"warning: no real node: {preflight.report(missing)}", err=True)
            typer.echo("the fake (kwok) nodes are up; the real-node e2e tests will be skipped")
        else:
            node = RealNode(c, default_layout(c.name))
            try:
                node.up()
                set_real_node_only(c, False)
            except ClusterError as exc:
                typer.echo(f"error: the real node did not come up: {exc}", err=True)
                raise typer.Exit(1) from exc
            typer.echo(
                f"real node {node.layout.name} Ready (cordoned until a test or `make dev` uses "
                f"it; logs in {node.layout.logs})"
            )
            if not IMAGES_JSON.exists():
                typer.echo(
                    "the airt images are not built yet: `make images`, then `make cluster-up`"
                )
    typer.echo(f"KUBECONFIG={c.kubeconfig}")


@app.command("run")
def dev_run() -> None:
    """Cluster, CRDs, runtimes, operator, examples Ready, and a model served and answered."""
    from airt_dev import devjob
    from airt_dev.cluster import ClusterError
    from airt_dev.wait import WaitTimeoutError

    try:
        c = devjob.run(lambda line: typer.echo(f"[dev] {line}"))
    except (ClusterError, WaitTimeoutError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"KUBECONFIG={c.kubeconfig}")


@app.command("down")
def dev_down() -> None:
    """Stop the dev operator, the real node and the port-forward, and delete the local cluster."""
    from airt_dev import devjob
    from airt_dev.cluster import ClusterManager

    devjob.stop()
    ClusterManager.from_env().down()
    typer.echo("cluster deleted")


@app.command("dry-run")
def dev_dry_run() -> None:
    """Print the commands kwokctl would run (shows that every binary is a local path)."""
    from airt_dev.cluster import ClusterManager

    typer.echo(ClusterManager.from_env().dry_run())


@app.command("bin-dir")
def dev_bin_dir() -> None:
    """Print the directory of the pinned binaries (kubectl, helm, ...), building them if needed."""
    from airt_dev.cluster import tool_bin_dir

    typer.echo(str(tool_bin_dir()))


if __name__ == "__main__":  # pragma: no cover
    app()
