"""Just enough PromQL reading to find the metric and label names a query depends on.

Not a parser: it removes string literals, range selectors and grouping clauses, then takes
every remaining identifier that is not a function, an aggregation or a keyword. The tests of
this module pin the forms the dashboards and rules use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


@dataclass
class Query:
    metrics: set[str] = field(default_factory=set)
    # metric name -> label names matched in its selector braces
    matchers: dict[str, set[str]] = field(default_factory=dict)
    grouping: set[str] = field(default_factory=set)


def analyse(expr: str) -> Query:
    q = Query()
    for metric, body in _SELECTOR.findall(expr):
        names = {m.group(1) for m in _MATCHER.finditer(body)}
        if metric:
            q.matchers.setdefault(metric, set()).update(names)
        elif "__name__" in names:
            raise ValueError(f"selectors by __name__ are not supported: {expr}")
    text = _STRING.sub('""', expr)
    text = _SELECTOR.sub(lambda m: m.group(1) or "", text)
    text = _RANGE.sub("", text)
    text = _VARIABLE.sub("", text)
    for _, labels in _GROUPING.findall(text):
        q.grouping.update(x.strip() for x in labels.split(",") if x.strip())
    text = _GROUPING.sub(" ", text)
    for name, call in _IDENT.findall(text):
        if call or name in KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        q.metrics.add(name)
    return q


def exposed_names(family: str, kind: str) -> set[str]:
    """The sample names a metric family of this ``# TYPE`` exposes."""
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    if kind == "summary":
        return {family, f"{family}_count", f"{family}_sum"}
    return {family}


def parse_exposition(text: str) -> dict[str, str]:
    """``/metrics`` text -> {sample name: metric family} from its ``# TYPE`` lines."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            for name in exposed_names(family, kind.strip()):
                out[name] = family
    return out
