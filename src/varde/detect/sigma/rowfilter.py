"""A row filter for a group's rules: one cheap pass that keeps only the rows some rule may match.

Every compiled rule carries a prefilter (:func:`varde.detect.sigma.compile.prefilter`): a tree of
"and"/"or" over atoms (a field's lower-cased value equals, contains, starts or ends with a text)
that is true for every event the rule matches. Matching a web server log means testing ~20
rules on every request, most of them keyword rules that search the whole text of the event for
dozens of strings each; DuckDB scans the text once per string. Yet in real logs almost no request
matches anything. So before the engine builds a group's table it keeps only the rows where at
least one rule's prefilter can hold, tested with one RE2 alternation per field (one pass over
the text, not one per string). The rules then run on those rows alone, with their exact SQL, so
the matches are the same.

A rule whose prefilter is "may match" (negations, regular expressions) or holds for most rows
needs every row: then the engine filters nothing. Of an "and" the parts too
common to be worth testing are left out (``cs-method = 'get'`` holds for most requests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from varde.detect.sigma.compile import literal

#: A part whose texts are shorter than this is taken to hold for many rows (``get``, ``200``),
#: unless the distinct values of its field say otherwise (see ``GroupValues.common``).
MIN_TEXT = 3

#: RE2 metacharacters, escaped in the literal texts of the alternations.
_META = set("\\.+*?()|[]{}^$")

_ANCHORS = {"eq": "^{}$", "contains": "{}", "starts": "^{}", "ends": "{}$"}

Atom = tuple  # ("atom", field, kind, texts)


def by_length(atom: Atom) -> int | None:
    """The default rank of ``atom`` (higher: rarer rows; None: too common to filter on): the
    length of its shortest text, None below MIN_TEXT."""
    shortest = min(len(t) for t in atom[3])
    return None if shortest < MIN_TEXT else shortest


def holds(value: str, atom: Atom) -> bool:
    """Whether ``atom`` holds for ``value`` (a field's lower-cased value)."""
    _, _, kind, texts = atom
    if kind == "eq":
        return value in texts
    if kind == "contains":
        return any(t in value for t in texts)
    if kind == "starts":
        return value.startswith(tuple(texts))
    return value.endswith(tuple(texts))


def necessary(pre: object, rank: Callable[[Atom], int | None] = by_length) -> tuple | None:
    """A necessary condition of prefilter ``pre`` made of its selective atoms (every part of an
    "or", the selective parts of an "and"), or None when it has none (``rank`` says which
    atoms are too common to filter on)."""
    if pre is None:
        return None
    if pre[0] == "atom":  # type: ignore[index]
        return None if rank(pre) is None else pre  # type: ignore[arg-type, return-value]
    parts = [necessary(p, rank) for p in pre[1]]  # type: ignore[index]
    if pre[0] == "or":  # type: ignore[index]
        return None if any(p is None for p in parts) else ("or", parts)
    kept = [p for p in parts if p is not None]
    return None if not kept else kept[0] if len(kept) == 1 else ("and", kept)


def row_filter(conditions: list[tuple], expression: Callable[[str], str],
               rank: Callable[[Atom], int | None] = by_length) -> str:
    """SQL true for every row on which one of ``conditions`` (from :func:`necessary`) holds.

    ``expression`` gives a field's lower-cased SQL, the one the rules' predicates and
    prefilters read. A coarse test first (of each "and" only its rarest part, by ``rank``: one
    RE2 alternation per field, one pass), then the exact conditions on the rows it keeps
    (DuckDB evaluates the second part of an AND only where the first holds).
    """
    coarse = _alternations([_loose(c, rank) for c in conditions], expression)
    return f"({coarse} AND {_alternations(conditions, expression)})"


def _loose(condition: tuple, rank: Callable[[Atom], int | None]) -> tuple:
    """``condition`` with each "and" replaced by its rarest part: a weaker necessary condition
    whose atoms all merge into the per-field alternations."""
    if condition[0] == "atom":
        return condition
    parts = [_loose(p, rank) for p in condition[1]]
    if condition[0] == "or":
        return ("or", parts)
    return max(parts, key=lambda part: min(rank(a) or 0 for a in _atoms(part)))


def _alternations(conditions: list[tuple], expression: Callable[[str], str]) -> str:
    """SQL of ``conditions``: the atoms under "or"s as one RE2 alternation per field, each
    "and" as a conjunction."""
    atoms: dict[str, set[str]] = {}  # field -> anchored, escaped alternatives
    conjunctions: set[str] = set()
    pending = list(conditions)
    while pending:
        condition = pending.pop()
        if condition[0] == "or":
            pending.extend(condition[1])
        elif condition[0] == "and":
            conjunctions.add("(" + " AND ".join(_alternations([p], expression) for p in condition[1]) + ")")
        else:
            _, field, kind, texts = condition
            atoms.setdefault(field, set()).update(_ANCHORS[kind].format(_escape(t)) for t in texts)
    tests = [f"regexp_matches({expression(field)}, {literal('|'.join(sorted(alts)))})"
             for field, alts in sorted(atoms.items())]
    return "(" + " OR ".join([*tests, *sorted(conjunctions)]) + ")"


def _atoms(pre: tuple) -> Iterator[Atom]:
    if pre[0] == "atom":
        yield pre
    else:
        for part in pre[1]:
            yield from _atoms(part)


def _escape(text: str) -> str:
    """``text`` as an RE2 literal."""
    return "".join("\\" + c if c in _META else c for c in text)
