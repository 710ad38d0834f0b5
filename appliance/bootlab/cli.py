"""The `bootlab` command line: the admin's one entry point inside the appliance."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bootlab import __version__
from bootlab.errors import BootlabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootlab",
        description="Manage the bootlab AI appliance: registry auth, models, serving, training.",
    )
    parser.add_argument("--version", action="version", version=f"bootlab {__version__}")
    parser.set_defaults(handler=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except BootlabError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
