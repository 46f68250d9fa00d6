"""`seqserve serve`: build the settings once, configure logging, run the server."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from seqserve.tracing import TracingConfigError
from serving.logs import configure_logging
from serving.settings import SettingsError, build_settings
from serving.tracing import check_environment


def serve_main(argv: Sequence[str]) -> int:
    try:
        settings = build_settings(argv)
        check_environment(os.environ)
    except (SettingsError, TracingConfigError) as error:
        print(f"seqserve serve: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # The batches here are small and the event-loop thread is busy: tokenizers' own thread pool then
    # waits on the GIL and makes encode_batch 5-40x slower than encoding on the calling thread.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if settings.workers > 1:
        from serving.supervisor import supervise  # imports no gRPC: workers are spawned from a clean process

        return supervise(settings)
    import asyncio  # here: the supervisor above stays without it

    from serving.server import serve  # after logging, so import-time log lines are formatted

    return asyncio.run(serve(settings))
