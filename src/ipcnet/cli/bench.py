"""``ipcnet bench WHAT``: the benchmarks, each beside its peers in one run."""

from __future__ import annotations

import argparse
import importlib

HELP = "measure ipcnet beside its peers (transports, ...)"

# benchmark name -> (module in ipcnet.bench, one-line help)
BENCHMARKS = {
    "transports": (
        "transports",
        "1 GiB through pipe, fifo, socketpair, unix and tcp, beside a plain os.read/os.write loop",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=text, description=text)
        module = importlib.import_module(f"ipcnet.bench.{module_name}")
        module.add_arguments(p)
        p.set_defaults(_bench=module.run)


def run(args: argparse.Namespace) -> int:
    status: int = args._bench(args)
    return status
