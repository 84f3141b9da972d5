"""``ipcnet rpc serve|call|list``: serve Python functions over JSON-RPC 2.0, and call them.

serve MODULE:OBJECT ADDRESS...  OBJECT is an ``ipcnet.rpc.Methods`` registry, or any object
                                (module, instance, class) whose public methods are exported;
                                ``stdio:`` serves this process's stdin/stdout (for exec:).
call ADDRESS METHOD [ARG...]    each ARG is JSON (``3``, ``'"text"'``, ``'[1,2]'``); the
                                result is printed as JSON; an error goes to stderr, status 1.
list ADDRESS                    the server's methods (rpc.discover).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ipcnet.cli import tlsflags
from ipcnet.cli.argtypes import timeout, whole

if TYPE_CHECKING:
    from ipcnet.rpc import RPCError

HELP = "serve Python functions over JSON-RPC 2.0 (any driver, any framing), call them, list them"


def _wire_options() -> argparse.ArgumentParser:
    """--framing, --codec and --max-frame, from the framing and codec registries."""
    from ipcnet.addresses import SCHEMES
    from ipcnet.framing import CODECS, DEFAULT_CODEC, DEFAULT_MAX_SIZE, FRAMINGS

    by_framing: dict[str, list[str]] = {}
    for row in SCHEMES.values():
        by_framing.setdefault(row.framing, []).append(f"{row.name}:")
    common = max(by_framing, key=lambda f: len(by_framing[f]))
    auto = ", ".join(f"{f} on {' '.join(names)}" for f, names in by_framing.items() if f != common)
    framings = "; ".join(f"{name}: {entry.help}" for name, entry in FRAMINGS.items())
    codecs = [name for name, entry in CODECS.items() if entry.objects]
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("wire format")
    g.add_argument(
        "--framing",
        choices=["auto", *FRAMINGS],
        default="auto",
        help=f"auto (the default): {auto}, {common} elsewhere (length instead of newline "
        f"for --codec msgpack, whose payloads can hold newline bytes); {framings}",
    )
    g.add_argument(
        "--codec",
        choices=codecs,
        default=DEFAULT_CODEC,
        help="payload encoding: "
        + "; ".join(f"{name}: {CODECS[name].help}" for name in codecs)
        + f" ({DEFAULT_CODEC})",
    )
    g.add_argument(
        "--max-frame",
        type=whole(1),
        default=None,
        metavar="BYTES",
        help=f"largest frame ({DEFAULT_MAX_SIZE // (1 << 20)} MiB)",
    )
    return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ipcnet.cli.serve import common_options

    wire = _wire_options()
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser(
        "serve",
        parents=[common_options("rpc"), wire],
        help="serve MODULE:OBJECT's methods on addresses",
        description="serve MODULE:OBJECT's methods over JSON-RPC 2.0",
    )
    p.add_argument("target", metavar="MODULE:OBJECT", help="e.g. mypkg.api:methods")
    p.add_argument(
        "addresses",
        nargs="+",
        metavar="ADDRESS",
        help="tcp://host:port, unix:///path, stdio:, or http://host:port/path (JSON-RPC over HTTP)",
    )
    p.add_argument(
        "--debug", action="store_true", help="put tracebacks in error replies (never in prod)"
    )
    p = sub.add_parser("call", parents=[wire], help="call METHOD with JSON args, print the result")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("method", metavar="METHOD")
    p.add_argument("args", nargs="*", metavar="ARG", help="positional params, each one JSON")
    p.add_argument(
        "--named",
        "-n",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a named param (repeatable; not with positional ARGs)",
    )
    p.add_argument("--notify", action="store_true", help="send a notification (no reply)")
    p.add_argument(
        "--timeout", type=timeout, default=30.0, metavar="S", help="give up after S seconds (30)"
    )
    tlsflags.add_arguments(p, server=False)
    p = sub.add_parser("list", parents=[wire], help="list the server's methods (rpc.discover)")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--json", action="store_true", help="print rpc.discover's answer as it is")
    p.add_argument(
        "--timeout", type=timeout, default=30.0, metavar="S", help="give up after S seconds (30)"
    )
    tlsflags.add_arguments(p, server=False)


def run(args: argparse.Namespace) -> int:
    if args.action == "serve":
        return _serve(args)
    if args.action == "call":
        return _call(args)
    return _list(args)


def load_target(target: str) -> Any:
    """Import MODULE and find OBJECT in it (dotted attribute path; MODULE alone = the module)."""
    import importlib

    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else []:
        obj = getattr(obj, part)  # the operator's own spelling, never the wire's
    return obj


def _serve(args: argparse.Namespace) -> int:
    import ipcnet
    from ipcnet.cli.serve import serve_until_stopped
    from ipcnet.rpc import make_service, serve_channel

    try:
        target = load_target(args.target)
    except (ImportError, AttributeError) as exc:
        print(f"ipcnet rpc: cannot load {args.target}: {exc}", file=sys.stderr)
        return 2
    addresses = list(args.addresses)
    http = [a.startswith("http://") for a in addresses]
    if any(http) and not all(http):
        print("ipcnet rpc: http:// addresses cannot be mixed with others", file=sys.stderr)
        return 2
    if any(http):
        return _serve_http(target, addresses, args)
    service = make_service(
        target,
        addresses[0],
        framing=args.framing,
        codec=args.codec,
        debug=args.debug,
        max_frame=args.max_frame,
    )
    if addresses == ["stdio:"]:
        serve_channel(service, ipcnet.stdio())
        return 0
    if "stdio:" in addresses:
        print("ipcnet rpc: stdio: must be the only address", file=sys.stderr)
        return 2
    return serve_until_stopped(service, addresses, args)


def _serve_http(target: Any, urls: list[str], args: argparse.Namespace) -> int:
    """JSON-RPC in HTTP POST bodies (protocols.jsonrpc.http): the URL says where and the
    path; --framing does not apply (HTTP frames the bodies), --max-frame bounds a body."""
    from ipcnet.cli.serve import serve_until_stopped
    from ipcnet.protocols.jsonrpc.http import MAX_BODY, JsonRpcHttpService, split_url
    from ipcnet.rpc import make_service

    try:
        where = [split_url(u) for u in urls]
    except ValueError as exc:
        print(f"ipcnet rpc: {exc}", file=sys.stderr)
        return 2
    if len({path for _, path in where}) > 1:
        print("ipcnet rpc: every http:// address must have the same path", file=sys.stderr)
        return 2
    rpc = make_service(target, where[0][0], codec=args.codec, debug=args.debug)
    service = JsonRpcHttpService(rpc, where[0][1], args.max_frame or MAX_BODY)
    return serve_until_stopped(service, [a for a, _ in where], args)


def _client(args: argparse.Namespace) -> Any:
    from ipcnet import rpc

    return rpc.connect(
        args.address,
        framing=args.framing,
        codec=args.codec,
        timeout=args.timeout,
        max_frame=args.max_frame,
        **tlsflags.keywords(args),
    )


def _params(args: argparse.Namespace) -> Any:
    if args.named and args.args:
        raise ValueError("give positional ARGs or --named params, not both")
    if args.named:
        named = {}
        for item in args.named:
            name, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"--named wants NAME=JSON, got {item!r}")
            named[name] = _json_arg(text)
        return named
    return [_json_arg(a) for a in args.args] if args.args else None


def _json_arg(text: str) -> Any:
    """``text`` read by the JSON codec's rules (RFC 8259: no NaN or Infinity, which
    json.loads takes and orjson would send as null; numbers in range; valid UTF-8)."""
    from ipcnet.framing import DecodeError, JSONCodec

    try:
        return JSONCodec().decode(os.fsencode(text))
    except DecodeError as exc:
        if text[:1].isalpha():
            reason = f"a string needs quotes: '\"{text}\"'"
        else:
            reason = str(exc).removeprefix("invalid JSON: ")
        raise ValueError(f"argument {text!r} is not JSON ({reason})") from None


def _call(args: argparse.Namespace) -> int:
    from ipcnet.rpc import RPCError

    try:
        params = _params(args)
    except ValueError as exc:
        print(f"ipcnet rpc: {exc}", file=sys.stderr)
        return 2
    with _client(args) as client:
        if args.notify:
            if isinstance(params, dict):
                client.notify(args.method, **params)
            else:
                client.notify(args.method, *(params or []))
            return 0
        try:
            result = client.request(args.method, params)
        except RPCError as exc:
            return _failed(exc)
    print(json.dumps(result, ensure_ascii=False, default=repr))
    return 0


def _failed(exc: RPCError, hint: str = "") -> int:
    """Print the error reply ``exc`` the way ``call`` does: status 1."""
    error = exc.to_object()
    detail = f" {json.dumps(error['data'], default=str)}" if "data" in error else ""
    print(f"ipcnet rpc: error {exc.code}: {exc.message}{detail}{hint}", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
    from ipcnet.rpc import METHOD_NOT_FOUND, RPCError

    with _client(args) as client:
        try:
            answer = client.request("rpc.discover")
        except RPCError as exc:
            hint = " (the server offers no rpc.discover)" if exc.code == METHOD_NOT_FOUND else ""
            return _failed(exc, hint)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return 0
    for entry in answer.get("methods", []) if isinstance(answer, dict) else []:
        line = str(entry.get("x-signature") or entry.get("name"))
        summary = entry.get("summary")
        print(f"{line}  # {summary}" if summary else line)
    return 0
