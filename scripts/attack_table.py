"""Write src/varde/data/attack/enterprise.json: ATT&CK technique id -> name and tactics.

The analysis needs only which tactics a technique serves and its name, offline; this keeps a small
table derived from MITRE's STIX (mitre/cti ``enterprise-attack``, one file per object as in
shared/intel/attack) instead of shipping the whole bundle. Run it again when the release changes:

    python scripts/attack_table.py ../shared/intel/attack src/varde/data/attack/enterprise.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NOTICE = ("© 2025 The MITRE Corporation. This work is reproduced and distributed with the permission of "
          "The MITRE Corporation. Derived from mitre/cti enterprise-attack (ATT&CK terms of use).")


def _objects(folder: Path) -> list[dict]:
    return [o for f in sorted(folder.glob("*.json")) for o in json.loads(f.read_text(encoding="utf-8"))["objects"]]


def _attack_id(obj: dict) -> str | None:
    return next((r["external_id"] for r in obj.get("external_references", [])
                 if r.get("source_name") == "mitre-attack"), None)


def build(root: Path) -> dict:
    """The table from the STIX objects under ``root``."""
    matrix = _objects(root / "x-mitre-matrix")[0]
    tactics = {t["id"]: t for t in _objects(root / "x-mitre-tactic")}
    order = [tactics[ref] for ref in matrix["tactic_refs"]]
    patterns = [p for p in _objects(root / "attack-pattern")
                if not p.get("revoked") and not p.get("x_mitre_deprecated") and _attack_id(p)]
    names = {_attack_id(p): p["name"] for p in patterns}
    techniques = {}
    for p in patterns:
        tid = _attack_id(p)
        name = p["name"] if "." not in tid else f"{names.get(tid.split('.')[0], '')}: {p['name']}"
        phases = [k["phase_name"] for k in p.get("kill_chain_phases", []) if k["kill_chain_name"] == "mitre-attack"]
        techniques[tid] = [name, phases]
    return {
        "notice": NOTICE,
        "version": _release(root),
        "tactics": [[t["x_mitre_shortname"], t["name"], _attack_id(t)] for t in order],
        "techniques": dict(sorted(techniques.items())),
    }


def _release(root: Path) -> str:
    sources = root.parent / "SOURCES.md"
    text = sources.read_text(encoding="utf-8") if sources.exists() else ""
    return "18.1" if "v18.1" in text else "unknown"


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.write_text(json.dumps(build(root), indent=0, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
