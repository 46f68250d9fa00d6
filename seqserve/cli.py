"""The `seqserve` command: one entry point that hands each sub-command to its own package.

training/ and serving/ never import each other; only this dispatcher knows both, and it imports
each lazily so that `seqserve serve` on an ONNX-only install never loads TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, function taking argv)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("training.cli", "train_main"),
    "report": ("training.cli", "report_main"),
    "serve": ("serving.cli", "serve_main"),
    "classify": ("seqserve.client", "classify_main"),
    "loadtest": ("seqserve.loadtest.cli", "loadtest_main"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print("usage: seqserve {" + ",".join(COMMANDS) + "} [options]   (seqserve <command> --help)")
        return 0 if args and args[0] in ("-h", "--help") else 2
    module_name, function_name = COMMANDS[args[0]]
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
