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


def main(argv: list[str]) -> int:
    from airt_worker.settings import load_settings

    try:
        settings = load_settings(argv)
    except SystemExit as e:  # --help, or argparse rejected an argument
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except (ValidationError, ValueError) as e:
        print(f"airt-worker serve: invalid settings:\n{e}", file=sys.stderr)
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
