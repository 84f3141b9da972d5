"""``ipcnet bench NAME [OPTIONS]``: the benchmarks, each beside its peers in one run.

Each benchmark is a module in ``ipcnet.bench`` with ``main(argv) -> int``; its options are
its own (``ipcnet bench NAME --help``), and it is imported only when run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

HELP = "measure ipcnet beside its peers (ipcnet bench --help lists the benchmarks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ipcnet.bench.harness import BENCHMARKS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "benchmarks:\n" + "".join(f"  {n:<11} {t}\n" for n, t in BENCHMARKS.items())
    parser.add_argument(
        "benchmark",
        nargs="?",  # missing: run() names the choices, not argparse's "NAME, options"
        choices=list(BENCHMARKS),
        metavar="NAME",
        help="which benchmark (below)",
    )
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")


def run(args: argparse.Namespace) -> int:
    if args.benchmark is None:
        from ipcnet.bench.harness import BENCHMARKS

        print(f"ipcnet bench: name a benchmark: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"ipcnet.bench.{args.benchmark}")
    status: int = module.main(args.options)
    return status
