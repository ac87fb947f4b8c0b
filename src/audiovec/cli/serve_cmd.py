"""``audiovec serve MODEL [--db DIR]``: the HTTP service (loopback by default)."""

from __future__ import annotations

import argparse
import os

from audiovec.cli.models import DEFAULT_MODEL, HELP

API_KEY_ENV = "AUDIOVEC_API_KEY"  # = audiovec.serve.API_KEY_ENV (not imported: keeps --help fast)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve embeddings, search and classification over HTTP")
    p.add_argument("model", nargs="?", default=None, help=HELP)
    p.add_argument("--db", help="index folder to serve /v1/search from")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help=f"require this bearer token (default: ${API_KEY_ENV})")
    p.add_argument(
        "--insecure-no-auth", action="store_true", help="allow a non-loopback host without an API key"
    )
    p.add_argument("--name", default=None, help="model name reported by the API (default: folder name)")
    p.add_argument("--max-body-mb", type=float, default=25.0)
    p.add_argument("--max-audio-seconds", type=float, default=600.0)
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds a client has to send a complete request head (slow clients are disconnected)",
    )
    p.add_argument("--max-batch", type=int, default=32, help="items per forward pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="batching window")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.model import AudioTextEmbedder
    from audiovec.serve import ServiceLimits, check_bind, serve

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_bind(args.host, api_key, args.insecure_no_auth)  # fail before loading the model
    args.model = args.model or DEFAULT_MODEL
    model = AudioTextEmbedder.from_pretrained(args.model)
    limits = ServiceLimits(
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_audio_seconds=args.max_audio_seconds,
        request_timeout_s=args.request_timeout,
        header_timeout_s=args.header_timeout,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
    )
    serve(
        model,
        args.host,
        args.port,
        api_key=api_key,
        insecure_no_auth=args.insecure_no_auth,
        db=args.db,
        limits=limits,
        model_name=args.name or os.path.basename(os.path.normpath(args.model)),
    )
    return 0
