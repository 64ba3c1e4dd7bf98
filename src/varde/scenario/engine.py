"""The simulation engine: a seeded RNG per purpose, the simulated clock, and the output tree.

The clock runs hour by hour from the scenario's start. Each hour the background organisation
and the intruders' steps due in it emit records into a queue; records of that hour
are then written, in time order, to the writer (sink) of their evidence kind. Records that fall
later (a step that lasts hours) stay queued. Memory is therefore bounded by one hour of
traffic whatever the size of the case, and the same seed gives the same bytes.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from varde.scenario import formats
from varde.scenario.org import Org, build_org
from varde.scenario.truth import Truth

logger = logging.getLogger(__name__)

HOUR_US = 3_600_000_000
EXCHANGE_ROOT = ("C", "Program Files", "Microsoft", "Exchange Server", "V15")

#: Hourly and daily Exchange CSV logs: sink key -> (folder under V15, file prefix, log type, fields, hourly).
_EXCHANGE_LOGS: dict[str, tuple[str, str, str, tuple[str, ...] | list[str], bool]] = {
    "ews": ("Logging/Ews", "Ews_", "EWS Logs", formats.EWS_FIELDS, True),
    "ecp": ("Logging/ECP/Server", "ECPServer", "ECP Server Log", formats.ECP_FIELDS, False),
    "rps": ("Logging/CmdletInfra/Powershell-Proxy/Http", "Rps_Http_", "Rps Http Logs", formats.RPS_HTTP_FIELDS, True),
    "oabgen": ("Logging/OABGeneratorLog", "OABGenerator", "OAB Generator Log", formats.OABGEN_FIELDS, False),
}


@dataclass(frozen=True)
class Settings:
    """What the user asked for; None keeps the scenario's own value."""

    seed: int = 1
    days: int | None = None
    users: int | None = None
    size_bytes: int | None = None
    #: The clock's origin (midnight UTC of the first day); injectable, defaults to the scenario's.
    start: datetime | None = None


@dataclass(frozen=True)
class Summary:
    """What a simulation wrote."""

    out: Path
    days: int
    files: int
    bytes: int
    truth: dict[str, Any]


class Simulation:
    """One simulated server writing its evidence under ``out/<HOST>/``."""

    def __init__(self, out: Path, seed: int, start: datetime, org_users: int, host: str, domain: str,
                 build: str) -> None:
        self.out = out
        self.seed = seed
        self.start_us = int(start.replace(tzinfo=UTC).timestamp()) * 1_000_000
        self.org: Org = build_org(self.rng("org"), org_users, host, domain, build)
        self.root = out / host
        self.truth = Truth(host=host)
        self._sinks: dict[tuple[str, ...], formats.Sink] = {}
        self._queue: list[tuple[int, int, tuple[str, ...], tuple[Any, ...]]] = []
        self._seq = 0
        #: Per-simulation constants that writers build once (row templates).
        self.templates: dict[str, list[list[str]]] = {}
        self.file_bytes = 0
        self.file_count = 0

    def rng(self, *purpose: object) -> random.Random:
        """A generator of its own for one purpose: adding users never changes the intruders."""
        return random.Random(":".join(map(str, (self.seed, *purpose))))

    def at(self, day: int, clock: str) -> int:
        """Microseconds since 1970 of ``HH:MM[:SS]`` on day ``day`` (0 is the first)."""
        parts = [int(p) for p in clock.split(":")]
        seconds = parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)
        return self.start_us + day * 24 * HOUR_US + seconds * 1_000_000

    def emit(self, ts_us: int, sink: tuple[str, ...], *args: Any) -> None:
        """Queue one record for ``sink`` at ``ts_us`` (written when its hour is flushed)."""
        self._seq += 1
        self._queue.append((ts_us, self._seq, sink, args))

    def flush(self, until_us: int | None = None) -> None:
        """Write every queued record before ``until_us`` (all of them when None), in time order
        (time, then the order they were emitted in); later ones stay queued."""
        queue = self._queue
        queue.sort()  # by time, then emission order (unique): the rest of a record is never compared
        cut = len(queue) if until_us is None else bisect.bisect_left(queue, until_us, key=lambda r: r[0])
        sinks = self._sinks
        for ts_us, _, key, args in queue[:cut]:
            sink = sinks.get(key) or self.sink(key)
            sink.write(ts_us, *args)  # type: ignore[attr-defined]
        del queue[:cut]

    def sink(self, key: tuple[str, ...]) -> formats.Sink:
        """The writer of one evidence kind, created on first use."""
        found = self._sinks.get(key)
        if found is None:
            found = self._sinks[key] = self._new_sink(key)
        return found

    def _new_sink(self, key: tuple[str, ...]) -> formats.Sink:
        exchange = self.root.joinpath(*EXCHANGE_ROOT)
        kind = key[0]
        if kind == "iis":
            return formats.W3CSink(self.root / "C" / "inetpub" / "logs" / "LogFiles" / key[1])
        if kind == "proxy":
            return formats.ExchangeCsvSink(exchange / "Logging" / "HttpProxy" / key[1], "HttpProxy_",
                                           "HttpProxy Logs", formats.HTTPPROXY_FIELDS, self.org.build)
        if kind == "event":
            name = key[1].replace("/", "%4")
            first = self.rng("record", key[1]).randint(10_000, 900_000)
            return formats.EventSink(self.root / "EventLogs" / f"{name}.jsonl", key[1], self.org.server.fqdn, first)
        folder, prefix, log_type, fields, hourly = _EXCHANGE_LOGS[kind]
        return formats.ExchangeCsvSink(exchange / folder, prefix, log_type, fields, self.org.build, hourly)

    def write_file(self, windows_path: str, data: bytes, ts_us: int) -> Path:
        """Plant a file of the server's file system (``C:\\...``) in the tree, with its mtime."""
        drive, _, rest = windows_path.partition(":\\")
        path = self.root.joinpath(drive.upper(), *rest.split("\\"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(ts_us * 1000, ts_us * 1000))
        self.file_bytes += len(data)
        self.file_count += 1
        return path

    @property
    def bytes_written(self) -> int:
        """Bytes written so far (logs and planted files)."""
        return self.file_bytes + sum(s.bytes for s in self._sinks.values())

    def close(self) -> int:
        """Write what is queued, close every file; returns the number of files written."""
        self.flush()
        for sink in self._sinks.values():
            sink.close()
        return self.file_count + sum(s.files for s in self._sinks.values())


def run_hours(sim: Simulation, days: int, size_bytes: int | None,
              hour_work: Callable[[Simulation, int, int], None]) -> int:
    """Drive the clock: ``hour_work(sim, hour_index, hour_start_us)`` per hour, then flush it.

    Runs ``days`` days, and on past them (whole days) until ``size_bytes`` are written. Returns
    the number of days simulated.
    """
    hour, day_start_bytes = 0, -1
    while True:
        if hour % 24 == 0 and hour // 24 >= days:
            if size_bytes is None or sim.bytes_written >= size_bytes or sim.bytes_written == day_start_bytes:
                break  # done, or a whole day wrote nothing: the size cannot be reached
            day_start_bytes = sim.bytes_written
        start = sim.start_us + hour * HOUR_US
        hour_work(sim, hour, start)
        sim.flush(start + HOUR_US)
        if hour % 24 == 23:
            logger.info("simulated day %d: %d bytes", hour // 24 + 1, sim.bytes_written)
        hour += 1
    return hour // 24


def day_start(start: datetime) -> datetime:
    """Midnight UTC of ``start``'s day."""
    start = start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
    return datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(0)


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``10GB``, ``500MB``, ``1.5GiB`` or a plain number (decimal units, as disks)."""
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("kmgtib")
    unit = cleaned[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (try 10GB or 500MB)") from None
    if unit not in _UNITS or value <= 0:
        raise ValueError(f"not a size: {text!r} (try 10GB or 500MB)")
    return int(value * _UNITS[unit])
