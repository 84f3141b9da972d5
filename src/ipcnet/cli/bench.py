"""``ipcnet bench NAME [OPTIONS]``: the benchmarks, each beside its peers in one run.

Each benchmark is a module in ``ipcnet.bench`` with ``main(argv) -> int``; its options are
its own (``ipcnet bench NAME --help``), and it is imported only when run.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "measure ipcnet beside its peers: transports, echo, models, http, rpc, inspector, ipc"

# benchmark name -> one-line help (the module is ipcnet.bench.NAME)
BENCHMARKS = {
    "transports": "1 GiB through pipe, fifo, socketpair, unix, tcp beside a plain read/write loop",
    "echo": "closed-loop echo load against one server URL: msgs/s, MB/s, latency percentiles",
    "models": "every concurrency model and its peers under the same echo load, as one table",
    "http": "wrk against the web server, nginx, http.server and uvicorn+StaticFiles",
    "rpc": "JSON-RPC calls/s and framing beside multiprocessing.connection, pyzmq and xmlrpc",
    "inspector": "ipcnet sockets beside ss, netstat and psutil at 1k and 10k sockets",
    "xdp": "a UDP flood over veth dropped by XDP, nftables hooks, or read by C/Python (root)",
    "ipc": "100 B and 4 KiB messages over shm, mq, pipe, unix, multiprocessing, iceoryx2",
    # relay: issue 12
    "relay": "1 GiB and short connections through ipcnet relay, socat, HAProxy, nginx stream",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "benchmarks:\n" + "".join(f"  {n:<11} {t}\n" for n, t in BENCHMARKS.items())
    parser.add_argument(
        "benchmark", choices=list(BENCHMARKS), metavar="NAME", help="which benchmark (below)"
    )
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"ipcnet.bench.{args.benchmark}")
    status: int = module.main(args.options)
    return status
