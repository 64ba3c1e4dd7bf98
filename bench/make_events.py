"""Build a large, deterministic benchmark input for ``varde hunt``.

Every record of every EVTX file under the shared samples is parsed with the ``evtx`` package and
written as one JSON line in the ``evtx`` crate layout (``{"Event": {"System": ..., ...}}``,
compacted with orjson), and the whole set is repeated until at least ``--events`` lines exist.
Each repetition ``k`` (0, 1, 2 ...) is made distinct, so the file is not byte-identical copies:

* ``Event.System.EventRecordID`` becomes ``original + k * 1_000_000_000``;
* ``Event.System.TimeCreated.#attributes.SystemTime`` is shifted by ``k`` days and ``k`` seconds.

The output depends only on the sample files and the arguments (files are read in sorted path
order), so two runs give byte-identical files. A small ``.meta.json`` next to the output records
what was written; an existing output with matching metadata is reused unless ``--force``.

Usage::

    python bench/make_events.py                 # >= 350,000 events
    python bench/make_events.py --events 700000
    python bench/make_events.py --events 50000 --out bench/work/quick.jsonl
"""

from __future__ import annotations

import argparse
import os
import hashlib
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("VARDE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLES = SHARED / "corpus/evtx-samples"
DEFAULT_EVENTS = 350_000
#: Added to EventRecordID per repetition: far above any record id in the samples.
RECORD_ID_STRIDE = 1_000_000_000
#: A damaged file that keeps failing this many times in a row is abandoned.
MAX_CONSECUTIVE_ERRORS = 10_000
GENERATOR_VERSION = 1


def evtx_files(root: Path) -> list[Path]:
    """EVTX files below ``root`` in a stable order (by name, case-insensitive suffix)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".evtx")


def read_records(path: Path) -> tuple[list[dict], int]:
    """Every record of ``path`` as a decoded ``data`` document, and the number of read errors.

    The evtx iterator raises RuntimeError on a damaged record or chunk; calling next() again
    continues with the next one, so damaged files still give what they hold.
    """
    import evtx

    records: list[dict] = []
    errors = 0
    try:
        iterator = evtx.PyEvtxParser(str(path)).records_json()
    except (RuntimeError, OSError) as exc:
        print(f"  skipped {path}: {exc}", file=sys.stderr)
        return records, 1
    consecutive = 0
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            break
        except RuntimeError:
            errors += 1
            consecutive += 1
            if consecutive >= MAX_CONSECUTIVE_ERRORS:
                print(f"  gave up on {path} after {consecutive} errors in a row", file=sys.stderr)
                break
            continue
        consecutive = 0
        try:
            doc = orjson.loads(record["data"])
        except orjson.JSONDecodeError:
            errors += 1
            continue
        records.append(doc)
    return records, errors


class Template:
    """One record, pre-split so that each repetition only patches two values."""

    __slots__ = ("doc", "system", "record_id", "created_attrs", "created", "created_text")

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        event = doc.get("Event") if isinstance(doc, dict) else None
        system = event.get("System") if isinstance(event, dict) else None
        self.system = system if isinstance(system, dict) else None
        self.record_id = None
        self.created_attrs = None
        self.created = None
        self.created_text = None
        if self.system is None:
            return
        rid = self.system.get("EventRecordID")
        if isinstance(rid, int) and not isinstance(rid, bool):
            self.record_id = rid
        created = self.system.get("TimeCreated")
        attrs = created.get("#attributes") if isinstance(created, dict) else None
        if isinstance(attrs, dict) and isinstance(attrs.get("SystemTime"), str):
            try:
                self.created = datetime.fromisoformat(attrs["SystemTime"])
                self.created_attrs = attrs
                self.created_text = attrs["SystemTime"]
            except ValueError:
                pass

    def render(self, rep: int) -> bytes:
        """The record as repetition ``rep`` (0 is the original), as compact JSON."""
        if self.record_id is not None:
            self.system["EventRecordID"] = self.record_id + rep * RECORD_ID_STRIDE
        if self.created is not None:
            self.created_attrs["SystemTime"] = (
                _iso_z(self.created + timedelta(days=rep, seconds=rep)) if rep else self.created_text
            )
        return orjson.dumps(self.doc)


def _iso_z(moment: datetime) -> str:
    """``2021-03-31T23:51:45.018767Z`` (the evtx crate's SystemTime form)."""
    text = moment.replace(tzinfo=None).isoformat(timespec="microseconds")
    return text + "Z"


def load_templates(root: Path, verbose: bool = True) -> tuple[list[Template], list[Path], int]:
    files = evtx_files(root)
    templates: list[Template] = []
    errors = 0
    for path in files:
        docs, errs = read_records(path)
        errors += errs
        templates.extend(Template(d) for d in docs)
    if verbose:
        print(f"read {len(templates)} records from {len(files)} EVTX files ({errors} read errors)", file=sys.stderr)
    return templates, files, errors


def sources_digest(files: list[Path]) -> str:
    """A cheap fingerprint of the sample set (paths, sizes, mtimes)."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def default_output(events: int) -> Path:
    return BENCH / "work" / f"events-{events}.jsonl"


def build(events: int, out: Path, root: Path = SAMPLES, force: bool = False, verbose: bool = True) -> dict:
    """Write at least ``events`` lines to ``out`` (reused when already built); return its metadata."""
    meta_path = out.with_name(out.name + ".meta.json")
    files = evtx_files(root)
    wanted = {"generator": GENERATOR_VERSION, "min_events": events, "sources": sources_digest(files)}
    if not force and out.exists() and meta_path.exists():
        meta = orjson.loads(meta_path.read_bytes())
        if all(meta.get(k) == v for k, v in wanted.items()) and meta.get("bytes") == out.stat().st_size:
            if verbose:
                print(f"reusing {out} ({meta['events']} events, {meta['bytes'] / 1e6:.0f} MB)", file=sys.stderr)
            return meta
    started = time.perf_counter()
    templates, files, errors = load_templates(root, verbose)
    if not templates:
        raise SystemExit(f"no EVTX records found under {root}")
    reps = -(-events // len(templates))  # ceiling: whole repetitions only
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    written = 0
    with open(tmp, "wb", buffering=8 << 20) as handle:
        for rep in range(reps):
            handle.write(b"\n".join(t.render(rep) for t in templates))
            handle.write(b"\n")
            written += len(templates)
    tmp.replace(out)
    meta = {
        **wanted,
        "events": written,
        "repetitions": reps,
        "records_per_repetition": len(templates),
        "evtx_files": len(files),
        "read_errors": errors,
        "bytes": out.stat().st_size,
        "seconds": round(time.perf_counter() - started, 1),
    }
    meta_path.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    if verbose:
        print(f"wrote {out}: {written} events ({reps} x {len(templates)}), {meta['bytes'] / 1e6:.0f} MB "
              f"in {meta['seconds']} s", file=sys.stderr)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="minimum number of events")
    parser.add_argument("--out", type=Path, help="output file (default bench/work/events-N.jsonl)")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder with EVTX files")
    parser.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    args = parser.parse_args()
    build(args.events, args.out or default_output(args.events), args.samples, args.force)


if __name__ == "__main__":
    main()
