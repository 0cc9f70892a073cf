"""The `airt-worker` command: the worker image's entry point.

`airt-worker serve` runs the inference worker and `airt-worker fetch` the model-fetch init
container (the operator renders both as `args` of this image). Each command hands the rest of
its arguments to the component's own settings parser, so `airt-worker serve --help` lists the
worker's settings.
"""

from __future__ import annotations

from importlib.metadata import version

import typer

app = typer.Typer(
    name="airt-worker",
    help="The airt inference worker and its model fetcher.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"airt-worker {version('airt-worker')}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The airt inference worker and its model fetcher."""


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_PASSTHROUGH)
def serve(ctx: typer.Context) -> None:
    """Run the inference worker (options: `airt-worker serve --help`)."""
    from airt_worker.main import main

    raise typer.Exit(main(list(ctx.args)))


@app.command(context_settings=_PASSTHROUGH)
def fetch(ctx: typer.Context) -> None:
    """Download and verify a model (the model-fetch init container; `airt-worker fetch --help`)."""
    from airt_worker.fetch import main

    raise typer.Exit(main(list(ctx.args)))


if __name__ == "__main__":  # pragma: no cover
    app()
