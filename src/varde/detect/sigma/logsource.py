"""Where the events of a Sigma log source are: channels, event ids and field names.

The mapping is data (``varde/data/logsources.yml``); this module only reads it and answers
"which groups of events can this rule match?".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml
from sigma.rule import SigmaLogSource


@dataclass(frozen=True)
class Target:
    """One place a log source's events are found.

    ``channels`` None means any Windows event log channel; ``event_ids`` None means any id.
    ``fields`` renames Sigma field names to this source's; ``conditions`` are further field
    values (any of the listed ones) that events of the log source have.
    """

    channels: frozenset[str] | None
    event_ids: frozenset[int] | None = None
    fields: tuple[tuple[str, str], ...] = ()
    conditions: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    def field_name(self, name: str) -> str:
        """The name of Sigma field ``name`` in this target's events."""
        return dict(self.fields).get(name, name)

    def covers(self, channel: str | None, event_id: int | None, windows: bool) -> bool:
        """Whether a group of events (channel, event id) belongs to this target."""
        if self.channels is None:
            if not windows:
                return False
        elif channel not in self.channels:
            return False
        return self.event_ids is None or event_id in self.event_ids


@dataclass(frozen=True)
class LogsourceMap:
    """The services and categories of ``product: windows`` and their targets."""

    services: dict[str, tuple[Target, ...]]
    categories: dict[str, tuple[Target, ...]]
    digest: str = ""  # of the source text: part of the compiled-rule cache key

    def fingerprint(self) -> str:
        """A digest that changes whenever the mapping does."""
        return self.digest

    def targets(self, logsource: SigmaLogSource) -> tuple[Target, ...] | str:
        """Targets of ``logsource``, or the reason why no event log holds it."""
        product, service, category = logsource.product, logsource.service, logsource.category
        if product not in (None, "windows"):
            return f"log source product {product!r} is not read from Windows event logs"
        if category is not None:
            found = self.categories.get(category)
            return found if found else f"log source category {category!r} has no Windows event log mapping"
        if service is not None:
            found = self.services.get(service)
            return found if found else f"log source service {service!r} has no Windows event log mapping"
        if product == "windows":
            return (Target(channels=None),)
        return "log source names no product, service or category"


def _target(spec: dict) -> Target:
    conditions = tuple(
        (name, tuple(str(v) for v in (value if isinstance(value, list) else [value])))
        for name, value in sorted((spec.get("conditions") or {}).items())
    )
    ids = spec.get("event_ids")
    return Target(
        channels=frozenset(spec["channels"]),
        event_ids=frozenset(int(i) for i in ids) if ids else None,
        fields=tuple(sorted((spec.get("fields") or {}).items())),
        conditions=conditions,
    )


@cache
def default_map() -> LogsourceMap:
    """The bundled mapping."""
    text = resources.files("varde.data").joinpath("logsources.yml").read_text(encoding="utf-8")
    data = yaml.load(text, Loader=yaml.CSafeLoader)
    services = {name: (Target(channels=frozenset(chs)),) for name, chs in data["services"].items()}
    categories = {name: tuple(_target(s) for s in specs) for name, specs in data["categories"].items()}
    return LogsourceMap(services, categories, hashlib.sha256(text.encode()).hexdigest())
