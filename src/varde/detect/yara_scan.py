"""Scan the evidence with the compiled YARA rules: every file whole (bounded), and the lines of
text files for log rules.

*File scan*: every input that could be opened (plain files, archives, archive members streamed
out of their archive under the archive limits, files no reader claims) is scanned once with its
first :attr:`ScanLimits.max_bytes` bytes; a larger file is scanned truncated, and a warning says
so. Matches of file rules (not log rules) are kept with their offsets.

*Line scan* (only when some rule is a log rule, see :func:`varde.detect.yara.is_log_rule`):
text inputs (no NUL byte in the first 64 KiB) are read whole, in blocks of whole lines. A block
is scanned first; where a log rule matches, each line that holds one of its matches is scanned
on its own, and the rule counts for the lines it matches by itself, as THOR applies log rules
line by line. A log rule therefore needs one of its strings in the line (a condition that holds
without any string, such as ``filesize < 100``, is not evaluated line by line).

Every file gets a row in ``yara_scans`` (outcome ``scanned``, ``truncated``, ``timeout``,
``error`` or ``not-opened``); every problem is also a read warning with locator ``yara``.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import yara_x

from varde.detect.yara import YaraRules
from varde.errors import EvidenceError
from varde.events.files import extension_of, tree_path, windows_folder
from varde.events.store import EventStore
from varde.sources.base import ArchiveLimits, EvidenceFile

logger = logging.getLogger(__name__)

HEAD_BYTES = 65536
_FLUSH_ROWS = 10_000
_READ_ERRORS = (OSError, EvidenceError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, ValueError)
#: THOR-style ``filetype`` values by magic number, for rules that test it.
_MAGIC = ((b"MZ", "EXE"), (b"PK\x03\x04", "ZIP"), (b"Rar!\x1a\x07", "RAR"), (b"7z\xbc\xaf\x27\x1c", "7Z"),
          (b"MDMP", "MDMP"), (b"!BDN", "PST"), (b"MSCF", "CAB"), (b"ElfFile\x00", "EVTX"))

MATCH_SCHEMA = pa.schema([("rule_uid", pa.string()), ("evidence", pa.int32()), ("scope", pa.string()),
                          ("offset", pa.int64()), ("line", pa.int64()), ("pattern", pa.string())])
SCAN_SCHEMA = pa.schema([("evidence", pa.int32()), ("scope", pa.string()), ("outcome", pa.string()),
                         ("bytes", pa.int64()), ("detail", pa.string())])


@dataclass(frozen=True)
class ScanLimits:
    """Bounds of a YARA scan (LOKI-RS scans at most 64 MB of a file; YARA-X's CLI has the same knobs)."""

    max_bytes: int = 64 << 20  # of one file, for file rules
    timeout: int = 60  # seconds per scan (a file, a block of lines or a line)
    block_bytes: int = 8 << 20  # of lines per block, for log rules
    max_offsets: int = 100  # occurrences of one rule kept per file
    max_matches: int = 100_000  # per pattern and scan; past it yara-x stops counting, and varde scans every line


@dataclass
class ScanSummary:
    """Counts of one scan run."""

    files: int = 0
    matches: int = 0
    problems: int = 0


class _Collector:
    """Match, scan and warning rows, stored in batches."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.matches: list[tuple] = []
        self.scans: list[tuple] = []
        self.warnings: list[tuple[int | None, str | None, str, int]] = []
        self.summary = ScanSummary()

    def match(self, uid: str, evidence: int, scope: str, offset: int | None, line: int | None,
              pattern: str | None) -> None:
        self.matches.append((uid, evidence, scope, offset, line, pattern))
        self.summary.matches += 1
        if len(self.matches) >= _FLUSH_ROWS:
            self.flush()

    def scan(self, evidence: int, scope: str, outcome: str, size: int, detail: str | None = None,
             warn: bool = True) -> None:
        self.scans.append((evidence, scope, outcome, size, detail))
        if warn and outcome not in ("scanned", "not-opened"):
            self.summary.problems += 1
            self.warnings.append((evidence, "yara", detail or outcome, 0))

    def flush(self) -> None:
        self.store.insert("yara_matches", MATCH_SCHEMA, self.matches)
        self.store.insert("yara_scans", SCAN_SCHEMA, self.scans)
        self.store.add_warnings(self.warnings)
        self.matches, self.scans, self.warnings = [], [], []


def scan_evidence(
    store: EventStore,
    rules: YaraRules,
    inputs: Iterable[tuple[int, EvidenceFile]],
    archive_limits: ArchiveLimits,
    limits: ScanLimits | None = None,
    progress: Callable[[EvidenceFile], None] | None = None,
) -> ScanSummary:
    """Scan each (evidence id, file) with ``rules``; inputs of the store not given are recorded
    as ``not-opened`` (they were refused when discovered, and have a read warning saying why)."""
    limits = limits or ScanLimits()
    out = _Collector(store)
    inputs = list(inputs)
    if rules.compiled is not None and rules.rules:
        scanner = yara_x.Scanner(rules.compiled)
        scanner.set_timeout(limits.timeout)
        scanner.max_matches_per_pattern(limits.max_matches)
        archives = {number for (number,) in store.query("SELECT id FROM evidence WHERE reader = 'zip'")}
        for number, evidence in inputs:
            _scan_input(scanner, rules, number, evidence, archive_limits, limits, out, number in archives)
            out.summary.files += 1
            if progress:
                progress(evidence)
    opened = {number for number, _ in inputs}
    for (number,) in store.query("SELECT id FROM evidence ORDER BY id"):
        if number not in opened:
            out.scan(number, "file", "not-opened", 0)
    out.flush()
    return out.summary


def _scan_input(scanner: yara_x.Scanner, rules: YaraRules, number: int, evidence: EvidenceFile,
                archive_limits: ArchiveLimits, limits: ScanLimits, out: _Collector, archive: bool) -> None:
    """Scan one input whole (bounded), then its lines if it is text and there are log rules.

    A truncated scan of an archive varde opened is not a warning: its members are scanned one
    by one, and the archive itself only matters by its header and place."""
    try:
        with evidence.open(archive_limits) as handle:
            data = handle.read(limits.max_bytes)
            more = bool(handle.read(1))
    except _READ_ERRORS as exc:
        out.scan(number, "file", "error", 0, f"YARA: cannot be read: {exc}")
        return
    _set_globals(scanner, tree_path(evidence), data)
    text = rules.has_log_rules and _is_text(data[:HEAD_BYTES])
    outcome, detail = "scanned", None
    if more:
        outcome = "truncated"
        detail = (f"YARA file rules saw the first {len(data)} of {evidence.size} bytes"
                  + (" (log rules read every line)" if text else "")
                  + (" (an archive: its members are scanned one by one)" if archive else ""))
    try:
        results = _scan(scanner, data)
    except yara_x.TimeoutError:
        outcome, detail = "timeout", f"YARA file scan stopped after {limits.timeout} s"
    except yara_x.ScanError as exc:
        outcome, detail = "error", f"YARA file scan failed: {exc}"
    else:
        _file_matches(rules, number, results, limits, out)
    out.scan(number, "file", outcome, len(data), detail, warn=not (archive and outcome == "truncated"))
    del data
    if text:
        _scan_lines(scanner, rules, number, evidence, archive_limits, limits, out)


def _scan(scanner: yara_x.Scanner, data: bytes) -> yara_x.ScanResults:
    """``scanner.scan``, with a Rust panic (pyo3 raises it as ``PanicException``, a BaseException)
    turned into a ScanError, so a module parser that panics on a hostile file loses that file only."""
    try:
        return scanner.scan(data)
    except (yara_x.TimeoutError, yara_x.ScanError):
        raise
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise yara_x.ScanError(f"yara-x panicked: {exc}") from exc


def _file_matches(rules: YaraRules, number: int, results: yara_x.ScanResults, limits: ScanLimits,
                  out: _Collector) -> None:
    """Matches of file rules, with their first occurrences (offset 0 for a rule without strings)."""
    for rule in results.matching_rules:
        uid = f"{rule.namespace}:{rule.identifier}"
        info = rules.rules.get(uid)
        if info is None or info.log:
            continue
        found = sorted((m.offset, p.identifier) for p in rule.patterns for m in p.matches)
        for offset, pattern in found[: limits.max_offsets] or [(0, None)]:
            out.match(uid, number, "file", offset, None, pattern)


def _scan_lines(scanner: yara_x.Scanner, rules: YaraRules, number: int, evidence: EvidenceFile,
                archive_limits: ArchiveLimits, limits: ScanLimits, out: _Collector) -> None:
    """Log rules over every line of a text input, block by block (see the module docstring)."""
    read, outcome, detail = 0, "scanned", None
    try:
        with evidence.open(archive_limits) as handle:
            for start, first_line, block in _blocks(handle, limits.block_bytes):
                read += len(block)
                try:
                    hits = _log_hits(rules, _scan(scanner, block))
                    lines = _candidate_lines(block, hits, limits.max_matches)
                    _line_matches(scanner, rules, number, block, lines, start, first_line, out)
                except yara_x.TimeoutError:
                    outcome, detail = "timeout", f"YARA log rules stopped after {limits.timeout} s in the lines from {first_line}"
                except yara_x.ScanError as exc:
                    outcome, detail = "error", f"YARA log rules failed in the lines from {first_line}: {exc}"
    except _READ_ERRORS as exc:
        outcome, detail = "error", f"YARA log rules: reading stopped after {read} bytes: {exc}"
    out.scan(number, "lines", outcome, read, detail)


def _log_hits(rules: YaraRules, results: yara_x.ScanResults) -> list[yara_x.Rule]:
    out = []
    for rule in results.matching_rules:
        info = rules.rules.get(f"{rule.namespace}:{rule.identifier}")
        if info is not None and info.log:
            out.append(rule)
    return out


def _candidate_lines(block: bytes, hits: list[yara_x.Rule], max_matches: int) -> list[tuple[int, int, int]]:
    """(start, end, index in block) of the lines that hold a match of a log rule; every line
    when a rule matched without strings or a pattern reached the match limit."""
    if not hits:
        return []
    patterns = [p for r in hits for p in r.patterns]
    offsets = sorted({m.offset for p in patterns for m in p.matches})
    if not offsets or any(len(p.matches) >= max_matches for p in patterns):
        offsets = [0, *(i + 1 for i in _newlines(block) if i + 1 < len(block))]
    return list(_lines_at(block, offsets))


def _newlines(block: bytes) -> Iterator[int]:
    position = block.find(b"\n")
    while position >= 0:
        yield position
        position = block.find(b"\n", position + 1)


def _lines_at(block: bytes, offsets: list[int]) -> Iterator[tuple[int, int, int]]:
    """The lines holding each of the sorted ``offsets``, once each, with their 0-based index."""
    index, position, last = 0, 0, -1
    for offset in offsets:
        index += block.count(b"\n", position, offset)
        position = offset
        start = block.rfind(b"\n", 0, offset) + 1
        if start == last:
            continue
        last = start
        end = block.find(b"\n", offset)
        yield start, len(block) if end < 0 else end, index


def _line_matches(scanner: yara_x.Scanner, rules: YaraRules, number: int, block: bytes,
                  lines: list[tuple[int, int, int]], start: int, first_line: int, out: _Collector) -> None:
    for line_start, line_end, index in lines:
        line = block[line_start:line_end].removesuffix(b"\r")
        for rule in _log_hits(rules, _scan(scanner, line)):
            pattern = next((p.identifier for p in rule.patterns if p.matches), None)
            out.match(f"{rule.namespace}:{rule.identifier}", number, "line", start + line_start,
                      first_line + index, pattern)


def _blocks(handle, size: int) -> Iterator[tuple[int, int, bytes]]:
    """(file offset, number of its first line, bytes) of successive blocks of whole lines; a line
    longer than a block is cut (and keeps its number)."""
    offset, line, carry = 0, 1, b""
    while chunk := handle.read(size):
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < size:
            carry = data
            continue
        cut = cut or len(data)
        block, carry = data[:cut], data[cut:]
        yield offset, line, block
        offset += len(block)
        line += block.count(b"\n")
    if carry:
        yield offset, line, carry


def _is_text(head: bytes) -> bool:
    """Text to read line by line: something, and no NUL byte (UTF-16 and binary formats have them)."""
    return bool(head) and b"\x00" not in head


def _set_globals(scanner: yara_x.Scanner, tree: str, data: bytes) -> None:
    """THOR/LOKI external variables for the file at ``tree``."""
    name = tree.rpartition("/")[2]
    scanner.set_global("filename", name)
    scanner.set_global("filepath", windows_folder(tree))
    scanner.set_global("extension", extension_of(name))
    scanner.set_global("filetype", next((kind for magic, kind in _MAGIC if data.startswith(magic)), ""))
    scanner.set_global("owner", "")
