"""`docbits search`: query a running service and print the ranked hits."""

from __future__ import annotations

import argparse
import json
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("search", help="query a running service over HTTP")
    p.add_argument("query", help="the text to search for")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    p.add_argument("--radius", type=int, default=0, help="Hamming radius (0: same bucket)")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--nearest", action="store_true", help="the nearest, whatever the radius")
    p.add_argument(
        "--filter", type=json.loads, help='metadata filter as JSON, e.g. {"split":"test"}'
    )
    p.add_argument("--json", action="store_true", help="print the raw JSON response")
    p.add_argument(
        "--api-key",
        default=os.environ.get("DOCBITS_READ_API_KEY") or os.environ.get("DOCBITS_API_KEY"),
        help="read key, if the service requires one",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Search and print one line per hit: distance, score, id and snippet."""
    from docbits.service.client import DocbitsClient, DocbitsError

    with DocbitsClient(args.url, api_key=args.api_key) as client:
        try:
            result = client.search(
                args.query,
                filter=args.filter,
                radius=args.radius,
                limit=args.limit,
                offset=args.offset,
                nearest=args.nearest,
            )
        except DocbitsError as exc:
            raise SystemExit(f"docbits search: {exc}") from exc
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    print(f"query code {result.query_code}, {result.candidates} candidates")
    for hit in result.hits:
        text = (hit.snippet or hit.text or "").replace("\n", " ")[:100]
        print(f"{hit.distance:3d}  {hit.score:.3f}  {hit.id}  {text}")
    return 0
