"""`fashionlab serve RUN`: the web page and JSON API (`fashionlab.serve`) on uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from fashionlab._extras import require_extra
from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options
from fashionlab.errors import ConfigError
from fashionlab.inference import BACKENDS

MIB = 1024 * 1024


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help=COMMANDS["serve"],
        description="Serve a page where you drop or pick an image and see the run's "
        "prediction, the 28x28 input the model saw and a Grad-CAM map; plus a JSON API "
        "(POST /api/predict, its schema at /openapi.json). Listens on 127.0.0.1 unless --host "
        "says otherwise.",
    )
    parser.add_argument("run", type=Path, help="run folder")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes "
        "the server to the network, without authentication)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=5.0,
        help="largest accepted upload in MiB (default 5); larger ones get HTTP 413",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="torch", help="inference engine (default torch)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per inference call, PyTorch and onnxruntime (default 1: requests are "
        "single images, and concurrent requests already keep the cores busy)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name clients may use besides localhost and --host (repeatable), e.g. the "
        "machine's name when listening on 0.0.0.0; others get 400 (no DNS rebinding)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="close a connection that has not sent a whole request within this time (default 30)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=64,
        metavar="N",
        help="connections at once; more are answered 503 (default 64)",
    )
    add_data_options(parser)
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    require_extra("serve", "fashionlab serve")
    import torch
    import uvicorn

    from fashionlab.serve import create_app
    from fashionlab.serve.app import LOCAL_HOSTS
    from fashionlab.serve.limits import deadline_protocol

    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if not args.request_timeout > 0:
        raise ConfigError(f"--request-timeout must be positive, got {args.request_timeout}")
    if args.max_connections < 1:
        raise ConfigError(f"--max-connections must be at least 1, got {args.max_connections}")
    hosts = [*LOCAL_HOSTS, *args.allow_host]
    if args.host not in ("0.0.0.0", "::"):
        hosts.append(f"[{args.host}]" if ":" in args.host else args.host)
    # One 28x28 image is far too little work to split across threads: waking idle OpenMP
    # workers costs more than the forward pass (10x slower on a busy 2-core machine).
    torch.set_num_threads(args.threads)
    # The model is loaded here, before uvicorn starts: a bad run folder is a one-line error.
    app = create_app(
        args.run,
        max_upload_bytes=int(args.max_upload_mb * MIB),
        backend=args.backend,
        data_dir=args.data_dir,
        onnx_threads=args.threads,
        allowed_hosts=hosts,
    )
    if not is_loopback(args.host):
        print(
            f"fashionlab: warning: listening on {args.host}: anyone who can reach this machine "
            "can use the server (there is no authentication)",
            file=sys.stderr,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"starting the server for {args.run} on http://{host}:{args.port}/", flush=True)
    # server_header=False: no "server: uvicorn" banner advertising versions to clients.
    # limit_concurrency: connections beyond it get 503; the deadline protocol closes those that
    # trickle; timeout_keep_alive closes idle ones.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        server_header=False,
        limit_concurrency=args.max_connections,
        timeout_keep_alive=5,
        http=deadline_protocol(args.request_timeout),
    )
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
