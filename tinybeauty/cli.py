"""The ``tinybeauty`` command line: a thin layer that parses arguments and calls the packages.

Each ``cmd_*`` module registers its subcommands; heavy imports (torch, mediapipe) happen inside handlers so
``--help`` stays fast. A :class:`makeup.errors.TinyBeautyError` becomes one ``error:`` line and exit code 2;
set ``TINYBEAUTY_DEBUG=1`` to see the traceback of an unexpected failure.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMAND_MODULES = (
    "tinybeauty.cmd_data",      # synth-faces, render, pairs check
    "tinybeauty.cmd_parse",     # parse
    "tinybeauty.cmd_teacher",   # teacher train, amplify
    "tinybeauty.cmd_student",   # student train/info, eval, apply
    "tinybeauty.cmd_export",    # export, bench
    "tinybeauty.cmd_demo",      # demo (the whole chain)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinybeauty",
        description="Five before/after makeup pairs -> a <100 KB on-device makeup model "
                    "(teacher -> amplify -> student -> export).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from makeup.errors import TinyBeautyError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
    except TinyBeautyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure is still one line unless debugging
        if os.environ.get("TINYBEAUTY_DEBUG"):
            raise
        print(f"error: {exc.__class__.__name__}: {exc} (set TINYBEAUTY_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
