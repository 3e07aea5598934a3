"""Entry-point plumbing for scripts and the CLI: logging, and user errors as one clear line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Callable

from voxflow.errors import VoxflowError


def run(main: Callable[[], None]) -> None:
    """Run ``main`` with INFO logging; a VoxflowError exits 1 with ``error: <message>`` on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        main()
    except VoxflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def json_arg(text: str, what: str) -> dict:
    """Parse a JSON command-line argument, naming the option when it is not valid JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VoxflowError(f"{what}: not valid JSON: {exc}") from exc
