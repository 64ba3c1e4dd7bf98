"""On-disk cache of compiled rule files.

Loading and compiling the whole SigmaHQ tree through pySigma takes seconds; the compiled form
of a rule file depends only on its bytes, its path, the placeholder values, the log source map
and varde's version, so it is cached under a key made of those (:func:`load_ruleset` computes
it). A damaged or foreign cache file is ignored and rewritten: the cache can only save time,
never change a result.

Location: ``$VARDE_CACHE_DIR``, else ``$XDG_CACHE_HOME/varde``, else ``~/.cache/varde``;
``VARDE_CACHE_DIR=off`` disables it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from varde import __version__
from varde.detect.sigma.compile import Column, Predicate
from varde.detect.sigma.logsource import Target

logger = logging.getLogger(__name__)

#: Bump when the compiled form or its meaning changes.
CACHE_FORMAT = 9


def default_cache_dir() -> Path | None:
    """The cache folder, or None when caching is off."""
    configured = os.environ.get("VARDE_CACHE_DIR")
    if configured:
        return None if configured.lower() in ("off", "0", "none") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "varde"


class RuleCache:
    """Compiled rule files stored as JSON, one file per key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / f"sigma-v{CACHE_FORMAT}-{__version__}"

    @classmethod
    def default(cls) -> RuleCache | None:
        folder = default_cache_dir()
        return cls(folder) if folder else None

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return orjson.loads(self._path(key).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as out:
                out.write(orjson.dumps(entry, default=str))
            Path(out.name).replace(path)
        except OSError as exc:  # a read-only home must not stop a hunt
            logger.debug("rule cache not written: %s", exc)


def encode_target(target: Target) -> dict[str, Any]:
    return {
        "channels": sorted(target.channels) if target.channels is not None else None,
        "event_ids": sorted(target.event_ids) if target.event_ids is not None else None,
        "fields": target.fields,
        "conditions": target.conditions,
    }


def decode_target(data: dict[str, Any]) -> Target:
    return Target(
        channels=frozenset(data["channels"]) if data["channels"] is not None else None,
        event_ids=frozenset(data["event_ids"]) if data["event_ids"] is not None else None,
        fields=tuple((a, b) for a, b in data["fields"]),
        conditions=tuple((name, tuple(values)) for name, values in data["conditions"]),
    )


def _tuples(pre: Any) -> Any:
    """A prefilter read back from JSON (lists) in its tuple form."""
    if pre is None:
        return None
    if pre[0] == "atom":
        return ("atom", pre[1], pre[2], list(pre[3]))
    return (pre[0], [_tuples(p) for p in pre[1]])


def encode_rule(rule: Any) -> dict[str, Any]:
    """A :class:`~varde.detect.sigma.rules.CompiledRule` as JSON-able data."""
    return {
        "info": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(rule.info).items()},
        "predicates": [
            [encode_target(t), p.sql, sorted([c.field, c.cased] for c in p.columns), p.python_udf,
             sorted(p.required), p.pre]
            for t, p in rule.predicates
        ],
        "event_ids": sorted(rule.event_ids) if rule.event_ids is not None else None,
    }


def decode_rule(data: dict[str, Any]) -> Any:
    """Inverse of :func:`encode_rule`."""
    from varde.detect.sigma.rules import CompiledRule, RuleInfo

    info = {k: tuple(v) if isinstance(v, list) else v for k, v in data["info"].items()}
    predicates = tuple(
        (decode_target(t), Predicate(sql, frozenset(Column(f, c) for f, c in cols), udf, frozenset(required),
                                     _tuples(pre)))
        for t, sql, cols, udf, required, pre in data["predicates"]
    )
    ids = data["event_ids"]
    return CompiledRule(RuleInfo(**info), predicates, frozenset(ids) if ids is not None else None)
