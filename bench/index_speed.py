"""Benchmark the exact hash index against FAISS binary indexes and a numpy scan; writes Markdown.

Usage: .venv/bin/python bench/index_speed.py [--n 1000000] [--bits 32 64] [--out PATH]
       [--real-codes codes.npy]   # (n, b/8) uint8 codes of real documents, replicated to --n
       [--kinds ball1 ball2 ...] [--datasets random] [--no-reload]  # a focused run

Every method answers the same queries. Single queries are timed interleaved (each query runs on
every method before the next), so the noise of a shared machine hits all methods alike; the page
reports medians. Result sets are checked against a brute-force numpy oracle for every query.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docbits.index.codes import codes_to_words  # noqa: E402
from docbits.index.hash_index import HashIndex  # noqa: E402
from docbits.index.id_table import IdTable  # noqa: E402
from docbits.index.store import StoredDocument  # noqa: E402
from docbits.index.store.sqlite import SQLiteStore  # noqa: E402

LOAD = os.getloadavg()  # at start-up, for the page
ORDER_SEED = 7  # the random order of methods within each single query
FLUSH_BYTES = 48 << 20
_FLUSH_BUFFER = np.ones(FLUSH_BYTES // 8, dtype=np.uint64)
ALL_KINDS = ("bucket", "ball1", "ball2", "ball3", "nearest10", "nearest100")
Answer = list[tuple[int, int]]  # (document number, distance), ordered as the method returns it


@dataclass
class Method:
    """One competitor for one query kind: timed calls and untimed converters to `Answer`s."""

    name: str
    single: Callable[[np.ndarray], object]
    to_answer: Callable[[object], Answer]
    exact_order: bool = True  # False: ties may come in any order (compare distance multisets)


@dataclass
class Row:
    """Timings of one method on one query kind."""

    kind: str
    method: str
    single_us: list[float] = field(default_factory=list)  # cold caches (after `flush_caches`)
    warm_us: list[float] = field(default_factory=list)  # the same query again, right away
    mismatches: int = 0


def clustered_codes(n: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Skewed synthetic codes: Zipf-sized clusters around random centres, few bit flips each."""
    centres = rng.integers(0, 256, size=(2000, bits // 8), dtype=np.uint8)
    weights = 1.0 / np.arange(1, len(centres) + 1) ** 1.1
    members = rng.choice(len(centres), size=n, p=weights / weights.sum())
    flips = rng.random((n, bits)) < 1.5 / bits
    return centres[members] ^ np.packbits(flips, axis=1)


def oracle(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Distances from a packed `query` to every code given as word-major uint64 `words` (W, n)."""
    query_words = codes_to_words(query[None, :])[0]
    distances = np.bitwise_count(words[0] ^ query_words[0]).astype(np.int32)
    for w in range(1, len(words)):
        distances += np.bitwise_count(words[w] ^ query_words[w])
    return distances


def range_answers(result: tuple) -> list[Answer]:
    """Per-query answers of a FAISS range search result."""
    lims, distances, labels = result
    labels, distances = labels.tolist(), distances.tolist()
    return [
        list(zip(labels[lo:hi], distances[lo:hi], strict=True))
        for lo, hi in zip(lims[:-1].tolist(), lims[1:].tolist(), strict=True)
    ]


def knn_answers(result: tuple) -> list[Answer]:
    """Per-query answers of a FAISS k-nearest search result."""
    distances, labels = result
    return [
        list(zip(lab, dist, strict=True))
        for lab, dist in zip(labels.tolist(), distances.tolist(), strict=True)
    ]


def faiss_range_method(name: str, index: faiss.IndexBinary, radius: int) -> Method:
    """FAISS range search for distance <= radius (FAISS keeps distances strictly below radius)."""
    nflip = radius if isinstance(index, faiss.IndexBinaryHash) else 0

    def search(queries: np.ndarray) -> tuple:
        if hasattr(index, "nflip"):
            index.nflip = nflip
        return index.range_search(queries, radius + 1)

    return Method(
        name,
        lambda query: search(query[None, :]),
        lambda result: range_answers(result)[0],
        exact_order=False,
    )


def faiss_knn_method(name: str, index: faiss.IndexBinary, k: int) -> Method:
    """FAISS k-nearest search."""
    return Method(
        name,
        lambda query: index.search(query[None, :], k),
        lambda result: knn_answers(result)[0],
        exact_order=False,
    )


def numpy_ball(words: np.ndarray, radius: int) -> Callable[[np.ndarray], tuple]:
    """Plain numpy scan: every code within `radius`, by (distance, number)."""

    def run(query: np.ndarray) -> tuple:
        distances = oracle(words, query)
        found = np.flatnonzero(distances <= radius)
        found = found[np.argsort(distances[found], kind="stable")]
        return found, distances[found]

    return run


def numpy_knn(words: np.ndarray, k: int) -> Callable[[np.ndarray], tuple]:
    """Plain numpy scan: the k nearest by (distance, number) via argpartition on a combined key."""

    def run(query: np.ndarray) -> tuple:
        distances = oracle(words, query)
        ranked = (distances.astype(np.int64) << 32) | np.arange(len(distances))
        found = np.argpartition(ranked, k - 1)[:k]
        found = found[np.argsort(ranked[found])]
        return found, distances[found]

    return run


def numpy_answer(result: tuple) -> Answer:
    """(numbers, distances) arrays as an Answer."""
    found, distances = result
    return list(zip(found.tolist(), distances.tolist(), strict=True))


def ours_method(index: HashIndex, kind: str, parameter: int, number_of: dict[str, int]) -> Method:
    """HashIndex for one query kind; string ids are mapped to numbers outside the timing."""

    def answer(hits: list) -> Answer:
        if kind == "bucket":
            return [(number_of[doc_id], 0) for doc_id in hits]
        return [(number_of[doc_id], dist) for doc_id, dist in hits]

    if kind == "bucket":
        single = lambda q: index.bucket(q.tobytes())  # noqa: E731
    elif kind == "ball":
        single = lambda q: index.ball(q.tobytes(), parameter)  # noqa: E731
    else:
        single = lambda q: index.nearest(q.tobytes(), parameter)  # noqa: E731
    return Method("ours HashIndex", single, answer)


def agrees(answer: Answer, expected: Answer, exact_order: bool) -> bool:
    """Same (number, distance) list; for tie-arbitrary methods, same set or same distances."""
    if exact_order:
        return answer == expected
    if sorted(d for _, d in answer) != sorted(d for _, d in expected):
        return False
    return len(answer) == len(expected)


def gathered_ids(table: IdTable, rows: object) -> list[str]:
    """`IdTable.ids_of` without its few-rows path: one numpy gather of the offsets, always."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = table._offsets[rows].tolist(), table._offsets[rows + 1].tolist()
    return [table._blob[s:e].decode("utf-8") for s, e in zip(starts, ends, strict=True)]


def plain_variants(
    kind: str,
    parameter: int,
    plain: HashIndex,
    number_of: dict[str, int],
) -> list[Method]:
    """Ours without one speed-up each (the same-run A/B): `plain` reads ids by gather only, and
    buckets are also answered as radius-0 balls through the compiled probe."""
    variants = []
    if kind == "bucket":
        by_kernel = ours_method(plain, "ball", 0, number_of)
        by_kernel.name = "ours, bucket by the probe kernel"
        variants.append(by_kernel)
    if kind in ("bucket", "ball"):
        gathered = ours_method(plain, kind, parameter, number_of)
        gathered.name = "ours, ids always gathered"
        if kind == "bucket":  # the plain index's own bucket path, ids by gather
            gathered.single = lambda q: plain.bucket(q.tobytes())
        variants.append(gathered)
    return variants


def build_methods(
    kind: str,
    parameter: int,
    index: HashIndex,
    plain: HashIndex,
    faiss_indexes: dict,
    words: np.ndarray,
    number_of: dict[str, int],
) -> list[Method]:
    """The competitors for one query kind; the numpy scan (the oracle) comes last."""
    flat, hashed, multi = faiss_indexes["flat"], faiss_indexes["hash"], faiss_indexes["multi"]
    mine = ours_method(index, kind, parameter, number_of)
    if kind == "nearest":
        return [
            mine,
            faiss_knn_method("FAISS IndexBinaryFlat", flat, parameter),
            Method("numpy scan", numpy_knn(words, parameter), numpy_answer),
        ]
    return [
        mine,
        *plain_variants(kind, parameter, plain, number_of),
        faiss_range_method("FAISS IndexBinaryHash", hashed, parameter),
        faiss_range_method("FAISS IndexBinaryMultiHash", multi, parameter),
        faiss_range_method("FAISS IndexBinaryFlat", flat, parameter),
        Method("numpy scan", numpy_ball(words, parameter), numpy_answer),
    ]


def time_kind(kind: str, methods: list[Method], queries: np.ndarray) -> list[Row]:
    """Time every method on every query (interleaved) and check the answers.

    Every single query is timed twice per method: first right after `flush_caches` (cold data
    caches, as for a query arriving after other work), then once more at once (warm). Each query
    runs the methods in a fresh random order (seeded). Without the flush the order decides who
    is cold: in a fixed rotation whatever comes right after the numpy scan or IndexBinaryFlat
    (full scans) always finds the caches cold, and a FAISS index that follows another FAISS
    index finds the shared wrapper code warm.
    """
    rows = [Row(kind, method.name) for method in methods]
    reference = methods[-1]  # the numpy scan is the oracle; its timed answer is the expected one
    order_rng = np.random.default_rng(ORDER_SEED)
    for query in queries:
        results: list[object] = [None] * len(methods)
        for which in order_rng.permutation(len(methods)).tolist():
            flush_caches()
            start = time.perf_counter()
            results[which] = methods[which].single(query)
            rows[which].single_us.append((time.perf_counter() - start) * 1e6)
            start = time.perf_counter()
            methods[which].single(query)
            rows[which].warm_us.append((time.perf_counter() - start) * 1e6)
        expected = reference.to_answer(results[-1])
        for method, row, result in zip(methods, rows, results, strict=True):
            if not agrees(method.to_answer(result), expected, method.exact_order):
                row.mismatches += 1
    return rows

    return rows


def flush_caches() -> None:
    """Read FLUSH_BYTES, more than this machine's 32 MiB L3 cache, evicting cached data."""
    _FLUSH_BUFFER.sum()


def faiss_builds(codes: np.ndarray, bits: int) -> tuple[dict, dict[str, float]]:
    """Build the FAISS indexes; returns them and their build seconds."""
    built, seconds = {}, {}
    for name, make in (
        ("flat", lambda: faiss.IndexBinaryFlat(bits)),
        ("hash", lambda: faiss.IndexBinaryHash(bits, bits)),
        ("multi", lambda: faiss.IndexBinaryMultiHash(bits, 4, bits // 4)),
    ):
        start = time.perf_counter()
        index = make()
        index.add(codes)
        seconds[name] = time.perf_counter() - start
        built[name] = index
    return built, seconds


def reload_seconds(index: HashIndex, bits: int, folder: Path) -> tuple[float, float]:
    """Write the index's documents (short texts) to a real SQLite file; time writing and reload."""
    store = SQLiteStore(folder / "reload.sqlite")
    ids, codes = index.to_arrays()
    start = time.perf_counter()
    for lo in range(0, len(ids), 50_000):
        store.upsert(
            [
                StoredDocument(doc_id, f"text of {doc_id}", {}, code.tobytes(), "bench")
                for doc_id, code in zip(ids[lo : lo + 50_000], codes[lo : lo + 50_000], strict=True)
            ]
        )
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    reloaded = store.load_index("bench", bits)
    load_s = time.perf_counter() - start
    assert store.integrity_check(reloaded, "bench").ok
    store.close()
    return write_s, load_s


def run_dataset(
    name: str, codes: np.ndarray, bits: int, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[list[str], list[Row], dict[str, float]]:
    """Everything for one (dataset, bits): builds, memory, query timings."""
    n = len(codes)
    ids = [f"doc-{i:07d}" for i in range(n)]
    number_of = {doc_id: i for i, doc_id in enumerate(ids)}
    start = time.perf_counter()
    index = HashIndex.from_arrays(bits, ids, codes)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    index.warm_up()
    warm_up_s = time.perf_counter() - start
    plain = HashIndex.from_arrays(bits, ids, codes)
    plain._ids.ids_of = types.MethodType(gathered_ids, plain._ids)
    faiss_indexes, faiss_build = faiss_builds(codes, bits)
    id_bytes = sum(map(len, ids))
    form_bytes = index.form_bytes * n  # the packed rescoring forms the index holds beside codes
    facts = {
        "structure_bytes": (index.nbytes - id_bytes - form_bytes) / n,
        "total_bytes": index.nbytes / n,
    }
    notes = [
        f"- build: ours {build_s:.2f} s (then {warm_up_s:.2f} s to load the compiled kernels: "
        f"`HashIndex.warm_up`, which start-up runs); FAISS flat {faiss_build['flat']:.2f} s, hash "
        f"{faiss_build['hash']:.2f} s, multi-hash {faiss_build['multi']:.2f} s",
        f"- ours memory: {index.nbytes / n:.1f} B/doc in total, of which "
        f"{facts['structure_bytes']:.1f} B/doc codes and structures, {form_bytes / n:.1f} B/doc "
        f"the packed rescoring forms and {id_bytes / n:.1f} B/doc the ids' own UTF-8 bytes",
        f"- buckets: {index.num_buckets():,}; largest {max(index.bucket_size_histogram()):,} docs",
    ]
    half = args.queries // 2
    queries = np.concatenate(
        [
            codes[rng.integers(0, n, size=args.queries - half)],
            rng.integers(0, 256, size=(half, bits // 8), dtype=np.uint8),
        ]
    )
    kinds = [("bucket", 0), ("ball", 1), ("ball", 2)] + ([("ball", 3)] if bits <= 32 else [])
    kinds += [("nearest", 10), ("nearest", 100)]
    kinds = [
        (kind, parameter) for kind, parameter in kinds if kind_name(kind, parameter) in args.kinds
    ]
    rows: list[Row] = []
    words = np.ascontiguousarray(codes_to_words(codes).T)
    faiss.omp_set_num_threads(1)
    for kind, parameter in kinds:
        label = {
            "bucket": "bucket",
            "ball": f"ball r={parameter}",
            "nearest": f"nearest k={parameter}",
        }[kind]
        methods = build_methods(kind, parameter, index, plain, faiss_indexes, words, number_of)
        rows += time_kind(label, methods, queries)
        print(f"  {name} {bits}-bit {label} done", flush=True)
    if args.reload and name == "random" and bits == args.bits[-1]:
        with tempfile.TemporaryDirectory() as folder:
            write_s, load_s = reload_seconds(index, bits, Path(folder))
        facts["reload_s"] = load_s
        notes.append(
            f"- start-up reload from a real SQLite file of {n:,} documents: {load_s:.2f} s "
            f"(writing them in 50,000-document transactions took {write_s:.1f} s)"
        )
    return notes, rows, facts


def kind_name(kind: str, parameter: int) -> str:
    """The `--kinds` token of a query kind: bucket, ball1..ball3, nearest10, nearest100."""
    return kind if kind == "bucket" else f"{kind}{parameter}"


def target_checks(title: str, rows: list[Row], facts: dict[str, float]) -> list[str]:
    """Table lines judging the issue's targets from the measured numbers of one section."""
    by_key = {(row.kind, row.method): row for row in rows}
    medians = {key: statistics.median(row.single_us) for key, row in by_key.items()}
    warm = {key: statistics.median(row.warm_us) for key, row in by_key.items()}
    checks: list[tuple[str, float, float, str]] = []
    for kind in ("bucket", "ball r=1", "ball r=2"):
        if (kind, "FAISS IndexBinaryHash") in medians:
            ratio = medians[(kind, "ours HashIndex")] / medians[(kind, "FAISS IndexBinaryHash")]
            checks.append((f"{kind} single, ours / IndexBinaryHash", ratio, 1.0, "×"))
            ratio = warm[(kind, "ours HashIndex")] / warm[(kind, "FAISS IndexBinaryHash")]
            checks.append((f"{kind} single warm, ours / IndexBinaryHash", ratio, 1.0, "×"))
    if ("nearest k=100", "FAISS IndexBinaryFlat") in medians:
        ratio = (
            medians[("nearest k=100", "ours HashIndex")]
            / medians[("nearest k=100", "FAISS IndexBinaryFlat")]
        )
        checks.append(("nearest k=100 single, ours / IndexBinaryFlat", ratio, 1.5, "×"))
    checks.append(
        ("index bytes/doc beyond id strings and forms", facts["structure_bytes"], 40.0, " B")
    )
    checks.append(("index bytes/doc including id strings", facts["total_bytes"], 40.0, " B"))
    if "reload_s" in facts:
        checks.append(("reload from SQLite", facts["reload_s"], 10.0, " s"))
    mismatches = sum(row.mismatches for row in rows)
    lines = [
        f"### Targets, {title}",
        "",
        "| target | measured | limit | met |",
        "|---|---:|---:|---|",
    ]
    for name, value, limit, unit in checks:
        verdict = "yes" if value <= limit else "**no**"
        lines.append(f"| {name} | {value:.2f}{unit} | {limit:g}{unit} | {verdict} |")
    lines.append(
        f"| answers identical to the oracle | {mismatches} mismatches | 0 | "
        f"{'yes' if mismatches == 0 else '**no**'} |"
    )
    return [*lines, ""]


AB_PAIRS = (  # (speed-up, query kind, the row with it, the row without it)
    ("few ids read one by one", "bucket", "ours HashIndex", "ours, ids always gathered"),
    ("few ids read one by one", "ball r=1", "ours HashIndex", "ours, ids always gathered"),
    (
        "bucket read in plain Python",
        "bucket",
        "ours, ids always gathered",
        "ours, bucket by the probe kernel",
    ),
    ("compiled probe", "ball r=1", "ours HashIndex", "numpy scan"),
    ("compiled probe", "ball r=2", "ours HashIndex", "numpy scan"),
    ("compiled scan and k smallest", "nearest k=100", "ours HashIndex", "numpy scan"),
)


def ab_lines(rows: list[Row]) -> list[str]:
    """What each of the index's speed-ups saves of a cold single query (median µs)."""
    medians = {(row.kind, row.method): statistics.median(row.single_us) for row in rows}
    lines = [
        "| speed-up | query | with µs | without µs | saves | kept (≥ 10%) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, kind, with_it, without in AB_PAIRS:
        if (kind, with_it) in medians and (kind, without) in medians:
            faster, slower = medians[(kind, with_it)], medians[(kind, without)]
            saves = 1 - faster / slower
            lines.append(
                f"| {name} | {kind} | {faster:,.0f} | {slower:,.0f} | {saves:.0%} "
                f"| {'yes' if saves >= 0.10 else '**no**'} |"
            )
    return [*lines, ""]


def markdown(
    sections: list[tuple[str, list[str], list[Row], dict[str, float]]], args: argparse.Namespace
) -> str:
    """The results page."""
    lines = [
        "# Index speed: HashIndex vs FAISS binary indexes vs numpy scan",
        "",
        f"Command: `.venv/bin/python bench/index_speed.py {' '.join(sys.argv[1:])}`",
        "",
        f"{args.n:,} codes; {args.queries} single queries, half codes of stored documents and "
        "half random codes. Each method answers each query twice, first right after reading "
        "48 MiB (more than the 32 MiB L3 cache, so every method starts with cold data caches, as "
        "a query arriving after other work would: `median µs`, `p90 µs` and the single-query "
        "targets), then again at once (`warm µs`, a check beyond the targets); methods run in a "
        "fresh seeded random order per query, FAISS on one OpenMP thread. Ours is timed after "
        "`HashIndex.warm_up` (loading its compiled kernels, as start-up does) and returns "
        "(str id, distance) lists, FAISS int labels (mapping ids to numbers for the comparison "
        "is not timed). `mismatch` counts queries whose answer differs from the numpy oracle "
        "(for FAISS, whose tie order is arbitrary, the multiset of distances and the result "
        "count are compared). IndexBinaryMultiHash uses 4 tables of b/4 bits with nflip=0 "
        f"(exact for r ≤ 3). Machine: 2 CPU cores shared with other jobs (load average "
        f"{LOAD[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), so absolute times "
        "are noisy; ratios within one table are the meaningful numbers.",
        "",
        "Reading the results. Ours probes a ball with one compiled loop (`kernels.probe`: per "
        "flip mask, one directory read and a bisection of a few sorted keys) and scans for "
        "`nearest` with another (`kernels.distances`, `kernels.smallest_rows`). The `numpy scan` "
        "rows are the plain version of the same answers, the A/B for those compiled loops: "
        "every query kind is several times slower without them. Single queries pay mostly "
        "fixed costs when the caches are cold (the Python method, the readers' lock, the "
        "kernel call, the result list), so a bucket is read in plain Python (one directory "
        "entry, a bisection of a few keys) and a few ids are read one by one. The rows "
        "`ours, ids always gathered` (ids read by one numpy gather whatever their number) and "
        "`ours, bucket by the probe kernel` (a bucket answered as a radius-0 ball) are ours "
        "without those two speed-ups, for the A/B table of each section. On clustered codes "
        "one answer can hold thousands of hits, each built as a Python (str, int) tuple, while "
        "FAISS returns int arrays (see the p90 column).",
        "",
    ]
    for title, notes, rows, facts in sections:
        lines += [f"## {title}", "", *notes, ""]
        lines += target_checks(title, rows, facts)
        lines += ["What each speed-up of ours saves (same run, same queries):", ""]
        lines += ab_lines(rows)
        lines += [
            "| query | method | median µs | p90 µs | vs ours | warm µs | warm vs ours | mismatch |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        ours_median: dict[str, tuple[float, float]] = {}
        for row in rows:
            median = statistics.median(row.single_us)
            warm = statistics.median(row.warm_us)
            p90 = statistics.quantiles(row.single_us, n=10)[-1]
            if row.method == "ours HashIndex":
                ours_median[row.kind] = (median, warm)
            ratio = median / ours_median[row.kind][0]
            warm_ratio = warm / ours_median[row.kind][1]
            lines.append(
                f"| {row.kind} | {row.method} | {median:,.0f} | {p90:,.0f} | {ratio:.2f}× | "
                f"{warm:,.0f} | {warm_ratio:.2f}× | {row.mismatches} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run every dataset and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--real-codes", type=Path, help="(n, b/8) uint8 .npy of real codes")
    parser.add_argument("--no-reload", dest="reload", action="store_false")
    parser.add_argument("--kinds", nargs="+", choices=ALL_KINDS, default=list(ALL_KINDS))
    parser.add_argument(
        "--datasets", nargs="+", choices=("random", "clustered"), default=["random", "clustered"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "index.md")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sections = []
    for bits in args.bits:
        datasets = {
            "random": rng.integers(0, 256, size=(args.n, bits // 8), dtype=np.uint8),
            "clustered": clustered_codes(args.n, bits, rng),
        }
        datasets = {name: codes for name, codes in datasets.items() if name in args.datasets}
        if args.real_codes is not None:
            real = np.load(args.real_codes, allow_pickle=False)
            if real.shape[1] == bits // 8:
                datasets["real (replicated)"] = np.resize(real, (args.n, real.shape[1]))
        for name, codes in datasets.items():
            print(f"{name} {bits}-bit codes", flush=True)
            notes, rows, facts = run_dataset(name, codes, bits, args, rng)
            sections.append((f"{bits}-bit, {name} codes", notes, rows, facts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(sections, args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
