"""Start `docbits serve` with some hand-written speed-ups swapped for their plain versions.

    python bench/ab_server.py --without hot-route --without batcher -- serve --data-dir D ...

Used by `bench/service_ab.py` to time each speed-up against its plain version in the same run.
The swaps live here, not in the product: each replaces one piece by what a newcomer would write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _plain_encode() -> None:
    """The hasher encodes through its torch module instead of the compiled FastEncoder."""
    from docbits.model.hasher import Hasher

    original = Hasher.__init__

    def init(self: Hasher, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        self.fast = None

    Hasher.__init__ = init  # type: ignore[method-assign]


def _python_term_counts() -> None:
    """The FastEncoder counts terms with the featurizer's regex in Python, not `TermTable`."""
    import numpy as np

    from docbits.model.inference import FastEncoder

    def term_counts(self: FastEncoder, texts: list[str]) -> tuple:
        rows = [self._python_row(text) for text in texts]
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(columns) for columns, _ in rows], out=indptr[1:])
        columns = np.concatenate([columns for columns, _ in rows])
        return indptr, columns, np.concatenate([counts for _, counts in rows])

    FastEncoder.term_counts = term_counts  # type: ignore[method-assign]


def _no_gc_freeze() -> None:
    """Start-up objects stay in the garbage collector's oldest generation (no `gc.freeze`)."""
    from docbits.service import state

    state.exempt_from_gc = lambda: None


SWAPS: dict[str, Callable[[], None]] = {
    "encode": _plain_encode,
    "term-counts": _python_term_counts,
    "gc-freeze": _no_gc_freeze,
}


def _register_optional() -> None:
    """Swaps of pieces that may have been removed from the product already."""
    try:
        from docbits.service.routers import search
    except ImportError:
        return
    if hasattr(search, "HOT_ROUTES"):

        def no_hot_route() -> None:
            search.HOT_ROUTES = []

        SWAPS["hot-route"] = no_hot_route
    try:
        from docbits.service import state

        if hasattr(state.ServiceState, "search_queries"):

            def no_batcher() -> None:
                from starlette.concurrency import run_in_threadpool

                async def search_queries(self, active, texts, finish):  # type: ignore[no-untyped-def]
                    return await run_in_threadpool(lambda: finish(active.encode_queries(texts)))

                state.ServiceState.search_queries = search_queries

            SWAPS["batcher"] = no_batcher
    except ImportError:
        pass


def main() -> None:
    _register_optional()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without", action="append", default=[], choices=sorted(SWAPS))
    parser.add_argument("serve_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    for name in args.without:
        SWAPS[name]()
    from docbits.service.cli import main as cli_main

    sys.argv = ["docbits", *[a for a in args.serve_args if a != "--"]]
    sys.exit(cli_main())


if __name__ == "__main__":
    main()
