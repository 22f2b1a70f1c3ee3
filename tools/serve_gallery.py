#!/usr/bin/env python3
"""Serve a shop gallery as a visual search service: an HTTP API and a page for people.

  tools/serve_gallery.py --config-file C --weights W --gallery GALLERY_DIR
                         [--host 127.0.0.1] [--port 8000] [--max-upload-mb 10] [--max-pixels N]
                         [--token TOKEN] [--allow-public]

Loads the model once, opens the gallery it built read-only (another model's gallery is refused
before serving), and serves with uvicorn: the page at /, the API under /api (documented at
/docs), /healthz. Photos of more than --max-upload-mb MiB or --max-pixels pixels are refused.
It listens on loopback (127.0.0.1) unless --host says otherwise; another address needs an access
token (--token, or $MATCHRCNN_SERVE_TOKEN), which every path but /healthz then requires, or
--allow-public. One detection per garment: class-agnostic suppression is on
(TEST.CLASS_AGNOSTIC_NMS.ENABLED False among the overrides turns it off). Extras:
pip install -e '.[serve]'.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from matchrcnn.inference.defaults import tool_opts
from matchrcnn.retrieval.cli import (
    add_max_pixels,
    add_model_arguments,
    add_opts,
    load_model,
    run_tool,
)
from matchrcnn.serve.access import TOKEN_ENV, check_binding
from matchrcnn.serve.app import ServeSettings, create_app
from matchrcnn.serve.service import SearchService
from matchrcnn.utils.errors import UsageError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--gallery", required=True, metavar="GALLERY_DIR",
                        help="a gallery built by this model (tools/build_gallery.py)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, metavar="MIB",
                        help="largest photo accepted, in MiB (default 10)")
    add_max_pixels(parser)
    parser.add_argument("--max-waiting", type=int, default=16, metavar="N",
                        help="photos accepted at once; more are refused with 503 (default 16)")
    parser.add_argument("--token", default=None,
                        help=f"access token required by every path but /healthz (default: "
                             f"${TOKEN_ENV} when set; none otherwise)")
    parser.add_argument("--allow-public", action="store_true",
                        help="listen beyond loopback without an access token")
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    add_opts(parser)
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    """The service's settings; refuses what would expose it or cannot work, before loading."""
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    check_binding(args.host, token, args.allow_public)
    return ServeSettings(max_upload_bytes=round(args.max_upload_mb * 2**20),
                         max_pixels=args.max_pixels, token=token, max_waiting=args.max_waiting)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    model = load_model(args.config_file, args.weights, tool_opts(args.opts))
    service = SearchService(model, args.gallery)
    try:
        info = service.info
        print(f"serving gallery {args.gallery}: {info.items:,} items from {info.images:,} "
              f"images ({info.index['kind']} index) at http://{args.host}:{args.port}/"
              f"{' (token required)' if settings.token else ''}", flush=True)
        uvicorn.run(create_app(service, settings), host=args.host, port=args.port,
                    log_level=args.log_level)
    finally:
        service.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
