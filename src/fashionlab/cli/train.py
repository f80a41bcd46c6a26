"""`fashionlab train`: train one model with its study recipe, any field overridable."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Literal, get_args, get_origin

from fashionlab._platform import process_started
from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options, add_tracking_options
from fashionlab.config import TrainConfig, parse_set_options
from fashionlab.models import build_config
from fashionlab.runs import load_config
from fashionlab.tracking import TrackingSettings
from fashionlab.training import resume, train
from fashionlab.training.distributed import is_main_process, launch
from fashionlab.training.multinode import (
    NodeSettings,
    default_timeout,
    launch_nodes,
    parse_rdzv_conf,
)

# Flags that map one-to-one onto TrainConfig fields.
FIELD_FLAGS = {
    "budget": str,  # "2m": parsed by TrainConfig, which then chooses the epochs
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "optimizer": str,
    "weight_decay": float,
    "momentum": float,
    "scheduler": str,
    "label_smoothing": float,
    "seed": int,
    "normalization": str,
    "split": str,
    "val_fraction": float,
    "early_stopping_patience": int,
    "train_subset": int,
    "eval_subset": int,
    "device": str,
    "threads": int,
    "precision": str,
    "name": str,
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help=COMMANDS["train"],
        description="Train one model. Without options it uses the recipe of the model's study; "
        "every TrainConfig field can be set with --set key=value.",
    )
    parser.add_argument("--model", help="registered model name (see 'fashionlab models')")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last finished epoch",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="parent folder of run folders (default: runs)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run folder of the same name"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="train at most this many epochs now, checkpoint and exit 0; continue later with "
        "--resume (for wall-time-limited cluster jobs)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel training on N local processes (runs this command under torchrun; "
        "same as: torchrun --nproc-per-node N -m fashionlab train ...); with --nnodes, the "
        "processes on each node (default 1)",
    )
    nodes = parser.add_argument_group(
        "across machines",
        "run the same command on every node; the first node, at --rdzv-endpoint, serves the "
        "rendezvous (torchrun's c10d launcher, gloo on CPU)",
    )
    nodes.add_argument("--nnodes", type=int, default=None, metavar="N", help="number of nodes")
    nodes.add_argument(
        "--rdzv-endpoint", metavar="HOST:PORT", help="the first node's address and a free port"
    )
    nodes.add_argument(
        "--rdzv-id", default="fashionlab", metavar="ID", help="job id, the same on every node"
    )
    nodes.add_argument(
        "--rdzv-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds to wait for the other nodes or the endpoint before a one-line error "
        "(default: FASHIONLAB_RDZV_TIMEOUT, else 60)",
    )
    nodes.add_argument(
        "--rdzv-conf",
        action="append",
        metavar="KEY=VALUE",
        help="torchrun rendezvous settings, e.g. is_host=1 on the endpoint's node where "
        "machines share a hostname",
    )
    nodes.add_argument(
        "--local-addr", metavar="ADDRESS", help="this node's address as the others reach it"
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="set_items",
        help="override any config field (repeatable), e.g. --set hflip=true",
    )
    recipe = parser.add_argument_group(
        "recipe", "each overrides the model's recipe (`fashionlab models MODEL` shows it); "
        "every other config field goes through --set"
    )
    for field, kind in FIELD_FLAGS.items():
        annotation = TrainConfig.model_fields[field].annotation
        choices = get_args(annotation) if get_origin(annotation) is Literal else None
        described = TrainConfig.model_fields[field].description
        recipe.add_argument(f"--{field.replace('_', '-')}", type=kind, dest=field, default=None,
                            choices=choices, help=described)  # fmt: skip
    add_data_options(parser)
    add_tracking_options(parser)
    parser.set_defaults(func=cmd_train)


def collect_overrides(args: argparse.Namespace) -> dict:
    overrides = {f: getattr(args, f) for f in FIELD_FLAGS if getattr(args, f) is not None}
    overrides.update(parse_set_options(args.set_items))
    return overrides


# The launcher's own options: the processes it starts get the command without them.
LAUNCH_OPTIONS = (
    "--nproc", "--nnodes", "--rdzv-endpoint", "--rdzv-id", "--rdzv-timeout", "--rdzv-conf",
    "--local-addr",
)  # fmt: skip


def without_launch_options(argv: list[str]) -> list[str]:
    """`argv` minus the launcher's options (both `--opt VALUE` and `--opt=VALUE`)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in LAUNCH_OPTIONS:
            skip = True
        elif not item.startswith(tuple(f"{option}=" for option in LAUNCH_OPTIONS)):
            out.append(item)
    return out


def node_settings(args: argparse.Namespace) -> NodeSettings | None:
    """This node's part of a multi-node job, or None for a single-machine run."""
    if args.nnodes is None:
        if args.rdzv_endpoint:
            raise SystemExit("fashionlab train: error: --rdzv-endpoint needs --nnodes N")
        return None
    if not args.rdzv_endpoint:
        raise SystemExit("fashionlab train: error: --nnodes needs --rdzv-endpoint HOST:PORT")
    settings = NodeSettings(
        nnodes=args.nnodes,
        endpoint=args.rdzv_endpoint,
        nproc_per_node=args.nproc or 1,
        run_id=args.rdzv_id,
        local_addr=args.local_addr,
        timeout_s=default_timeout() if args.rdzv_timeout is None else args.rdzv_timeout,
        rdzv_conf=parse_rdzv_conf(args.rdzv_conf),
    )
    settings.check()
    return settings


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc is not None and args.nproc < 1:
        raise SystemExit(f"fashionlab train: error: --nproc must be >= 1, got {args.nproc}")
    if args.stop_after is not None and args.stop_after < 1:
        raise SystemExit(
            f"fashionlab train: error: --stop-after must be >= 1, got {args.stop_after}"
        )
    if "WORLD_SIZE" not in os.environ:
        nodes = node_settings(args)
        if nodes is not None:
            return launch_nodes(nodes, without_launch_options(args.argv))
        if args.nproc and args.nproc > 1:
            return launch(args.nproc, without_launch_options(args.argv))
    overrides = collect_overrides(args)
    store_dir = args.resume.parent if args.resume else args.runs_dir
    callbacks = TrackingSettings.of(args.log, store_dir).callbacks()
    if args.resume:
        expected = None
        if overrides or args.model:
            stored = load_config(args.resume)
            expected = build_config(
                args.model or stored.model,
                {**stored.model_dump(), **overrides},
                source="command line",
            )
        resume(
            args.resume,
            quiet=args.quiet,
            data_dir=args.data_dir,
            expected_config=expected,
            stop_after=args.stop_after,
            callbacks=callbacks,
        )
        if is_main_process():
            print(args.resume)
        return 0
    if not args.model:
        raise SystemExit("fashionlab train: error: --model is required (or --resume RUN_DIR)")
    config = build_config(args.model, overrides, source="command line")
    run_dir = train(
        config,
        args.runs_dir,
        overwrite=args.overwrite,
        quiet=args.quiet,
        data_dir=args.data_dir,
        stop_after=args.stop_after,
        callbacks=callbacks,
        started=process_started(),  # a --budget counts the interpreter's start-up too
    )
    if is_main_process():
        print(run_dir)
    return 0
