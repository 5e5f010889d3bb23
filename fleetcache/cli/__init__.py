"""The ``python -m fleetcache`` command line: the registries of commands and benchmarks.

Each command lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit status).  Adding one is one line in :data:`COMMANDS`, or
in :data:`BENCHES` for a ``bench`` subcommand (e.g. ``"lock": "fleetcache.cli.bench_lock"``).
Modules are imported only to build the parser, and spawned worker processes import only the
module they run in.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import cast

#: Top-level commands: name -> module.
COMMANDS: dict[str, str] = {
    "demo": "fleetcache.cli.demo",
    "stats": "fleetcache.cli.stats",
    "invalidate": "fleetcache.cli.admin",
    "purge": "fleetcache.cli.admin",
    "doctor": "fleetcache.cli.doctor",
}

#: ``bench`` subcommands: name -> module.
BENCHES: dict[str, str] = {
    "stampede": "fleetcache.cli.bench_stampede",
    "hit": "fleetcache.cli.bench_hit",
    "lock": "fleetcache.cli.bench_lock",
    "fresh": "fleetcache.cli.bench_fresh",
    "llm": "fleetcache.cli.bench_llm",
}

Runner = Callable[[argparse.Namespace], int]


def _load(
    module_name: str, command: str
) -> tuple[str, Callable[[argparse.ArgumentParser], None], Runner]:
    """(help, add_arguments, run) of ``command`` in ``module_name``.

    A module serving several commands (admin) names them with a suffix:
    ``HELP_<command>``, ``add_arguments_<command>``, ``run_<command>``.
    """
    module: ModuleType = importlib.import_module(module_name)
    suffix = f"_{command}"
    if not hasattr(module, "run" + suffix):
        suffix = ""
    help_text = str(getattr(module, "HELP" + suffix))
    add = cast(Callable[[argparse.ArgumentParser], None], getattr(module, "add_arguments" + suffix))
    run = cast(Runner, getattr(module, "run" + suffix))
    return help_text, add, run


def _add_group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    registry: Mapping[str, str],
) -> None:
    for name, module_name in registry.items():
        help_text, add, run = _load(module_name, name)
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        add(parser)
        parser.set_defaults(_run=run)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, built from :data:`COMMANDS` and :data:`BENCHES`."""
    parser = argparse.ArgumentParser(
        prog="python -m fleetcache",
        description="fleetcache: demo, benchmarks and admin tools for a Redis cache of "
        "expensive calls.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_group(commands, COMMANDS)
    bench = commands.add_parser(
        "bench", help="benchmarks: " + ", ".join(BENCHES), description="Benchmarks."
    )
    benches = bench.add_subparsers(dest="bench", metavar="BENCH")
    benches.required = True
    _add_group(benches, BENCHES)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its status."""
    args = build_parser().parse_args(argv)
    run = cast(Runner, args._run)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
