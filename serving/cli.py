"""`seqserve serve`: build the settings once, configure logging, run the server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from serving.logs import configure_logging
from serving.settings import SettingsError, build_settings


def serve_main(argv: Sequence[str]) -> int:
    try:
        settings = build_settings(argv)
    except SettingsError as error:
        print(f"seqserve serve: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from serving.server import serve  # after logging, so import-time log lines are formatted

    return asyncio.run(serve(settings))
