"""`airt-worker serve`: the worker's entry point; parses settings and runs the composition root.

Called by `airt-worker serve` (`airt_worker.cli`) and by `python -m airt_worker` with the
remaining command-line arguments. Returns the process exit code: 0 after a clean drain, 1 when
the model cannot be served, 2 for bad settings.
"""

from __future__ import annotations

import json
import logging
import sys

from pydantic import ValidationError

from airt_contract.worker import WORKER_CONFIG_ENV


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record (`log_format: json`): what log pipelines parse without rules."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def settings_problems(error: ValidationError) -> list[str]:
    """One line per bad setting, named the ways it can be given (option, variable, the
    operator's configuration), never pydantic's dump of an internal class."""
    lines = []
    for err in error.errors():
        loc = [str(part) for part in err["loc"]]
        where = ".".join(loc) or "settings"
        if err["type"] == "missing":
            option = "--" + ".".join(part.replace("_", "-") for part in loc)
            env = "AIRT_" + "__".join(loc).upper()
            lines.append(
                f"missing setting {where}: give {option} or {env}, or set {where} in "
                f"{WORKER_CONFIG_ENV} or a --config-file"
            )
        else:
            lines.append(f"{where}: {err['msg']}")
    return lines


def main(argv: list[str]) -> int:
    from airt_worker.settings import load_settings

    try:
        settings = load_settings(argv)
    except SystemExit as e:  # --help, or argparse rejected an argument
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except ValidationError as e:
        for line in settings_problems(e):
            print(f"airt-worker serve: {line}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"airt-worker serve: {e}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter()
        if settings.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    import uvloop

    from airt_worker.server import serve

    return uvloop.run(serve(settings))
