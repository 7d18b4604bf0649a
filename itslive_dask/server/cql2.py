"""Attribute filters of the STAC API subset: CQL2 (JSON and text) and the query extension.

Both are evaluated on the granule table, column by column (no row loop). Queryable
properties are those of the public ``itslive-granules`` items; ``dt_days`` (the name the public
API's queryables use) is an alias of ``date_dt``. CQL2 text is parsed by the ``cql2`` package
(after a guard on size and nesting: its parser is recursive native code) into CQL2-JSON.
Timestamps outside pandas' range (years 1677..2262) are clamped, which keeps comparisons
right since catalog dates lie inside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from itslive_dask.errors import InvalidInputError
from itslive_dask.server.times import clamp_literal

__all__ = [
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_TEXT",
    "QUERYABLES",
    "eval_cql2",
    "eval_query_extension",
    "parse_cql2_text",
    "queryables_schema",
]

#: Longest CQL2 text filter accepted (characters).
MAX_FILTER_TEXT = 16_384
#: Deepest nesting of a CQL2 filter (parentheses / JSON objects) accepted.
MAX_FILTER_DEPTH = 50


def _col(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda t: t[name]


#: STAC property -> (kind, accessor on the granule table, description)
QUERYABLES: dict[str, tuple[str, Callable[[pd.DataFrame], pd.Series], str]] = {
    "id": ("string", _col("granule_id"), "Granule id (file name without .nc)"),
    "collection": ("string", lambda t: pd.Series("", index=t.index), "Collection id"),
    "datetime": ("datetime", _col("mid_date"), "Mid date of the image pair"),
    "mid_datetime": ("datetime", _col("mid_date"), "Mid date of the image pair"),
    "start_datetime": ("datetime", _col("acquisition_date_img1"), "Acquisition of image 1"),
    "end_datetime": ("datetime", _col("acquisition_date_img2"), "Acquisition of image 2"),
    "date_dt": ("number", _col("date_dt"), "Separation of the two images (days)"),
    "dt_days": ("number", _col("date_dt"), "Alias of date_dt (name used by the public API)"),
    "percent_valid_pixels": ("number", _col("percent_valid"), "Valid-pixel percentage"),
    "platform": ("string", _col("satellite_img1"), "Satellite of image 1 (LC08, S2A, S1A...)"),
    "itslive:sensor": ("string", _col("sensor"), "Sensor family (landsat, sentinel1, sentinel2)"),
    "proj:code": ("string", lambda t: "EPSG:" + t["epsg"].astype(str), "CRS of the granule grid"),
    "version": ("string", lambda t: t["version"].map(lambda v: f"{int(v):03d}"), "Product version"),
}


def queryables_schema(url: str) -> dict[str, Any]:
    """JSON Schema of the queryables (OGC API Features part 3)."""
    props: dict[str, Any] = {}
    for name, (kind, _, desc) in QUERYABLES.items():
        if kind == "datetime":
            props[name] = {"type": "string", "format": "date-time", "description": desc}
        else:
            props[name] = {"type": kind, "description": desc}
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": url,
        "type": "object",
        "title": "Queryables of itslive-granules",
        "properties": props,
        "additionalProperties": False,
    }


def _series(table: pd.DataFrame, prop: Any, collection: str) -> tuple[str, pd.Series]:
    if not isinstance(prop, str) or prop not in QUERYABLES:
        raise InvalidInputError(
            f"unknown property {prop!r:.100} in filter; queryables: {', '.join(QUERYABLES)}"
        )
    kind, get, _ = QUERYABLES[prop]
    if prop == "collection":
        return kind, pd.Series(collection, index=table.index, dtype=object)
    return kind, get(table)


def _literal(kind: str, value: Any, prop: str) -> Any:
    if isinstance(value, Mapping):
        if "timestamp" in value:
            value = value["timestamp"]
        elif "date" in value:
            value = value["date"]
        else:
            raise InvalidInputError(f"unsupported literal {value!r:.100} for {prop}")
    if kind == "number":
        if isinstance(value, bool):
            raise InvalidInputError(f"{prop} compares to numbers, got {value!r:.100}")
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInputError(f"{prop} compares to numbers, got {value!r:.100}") from None
        if not np.isfinite(f):
            raise InvalidInputError(f"{prop}: {value!r:.100} is not a finite number")
        return f
    if kind == "datetime":
        if not isinstance(value, str):
            raise InvalidInputError(f"{prop} compares to date-times, got {value!r:.100}")
        try:
            return clamp_literal(value)
        except InvalidInputError:
            raise InvalidInputError(f"{prop} compares to date-times, got {value!r:.100}") from None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidInputError(f"{prop} compares to strings, got {value!r:.100}")
    return str(value)


_CMP = {
    "=": lambda s, v: s == v,
    "<>": lambda s, v: s != v,
    "!=": lambda s, v: s != v,
    "<": lambda s, v: s < v,
    "<=": lambda s, v: s <= v,
    ">": lambda s, v: s > v,
    ">=": lambda s, v: s >= v,
}


def _depth(expr: Any) -> int:
    """Nesting depth of a JSON value (iterative: no recursion on hostile input)."""
    deepest = 0
    stack = [(expr, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, Mapping):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in value)
        if deepest > 10 * MAX_FILTER_DEPTH:
            break
    return deepest


def _like_regex(pattern: str) -> re.Pattern[str]:
    """A CQL2 LIKE pattern (``%`` any run, ``_`` one character, ``\\`` escapes) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


_OPS = "and, or, not, =, <>, <, <=, >, >=, between, in, like, isNull"


def eval_cql2(
    table: pd.DataFrame, expr: Any, depth: int = 0, *, collection: str = "itslive-granules"
) -> np.ndarray:
    """Boolean mask of the rows of ``table`` satisfying a CQL2-JSON expression.

    Supported: ``and``, ``or``, ``not``, ``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``,
    ``between``, ``in``, ``like``, ``isNull`` on the :data:`QUERYABLES`, with number, string,
    ``{"timestamp": ...}`` and ``{"date": ...}`` literals.

    Raises
    ------
    InvalidInputError
        Malformed or unsupported expressions, unknown properties, wrong literal types, nesting
        deeper than :data:`MAX_FILTER_DEPTH`.
    """
    if depth == 0 and _depth(expr) > 2 * MAX_FILTER_DEPTH:
        raise InvalidInputError(f"filter is nested more than {MAX_FILTER_DEPTH} levels deep")
    if depth > MAX_FILTER_DEPTH:
        raise InvalidInputError(f"filter is nested more than {MAX_FILTER_DEPTH} levels deep")
    if isinstance(expr, bool):
        return np.full(len(table), expr)
    if not isinstance(expr, Mapping) or "op" not in expr:
        raise InvalidInputError(
            f"filter: expected an object with 'op' and 'args', got {expr!r:.200}"
        )
    op = str(expr["op"])
    args = expr.get("args")
    if not isinstance(args, list):
        raise InvalidInputError(f"filter: 'args' of {op!r:.50} must be a list")
    low = op.lower()

    def sub(e: Any) -> np.ndarray:
        return eval_cql2(table, e, depth + 1, collection=collection)

    if low in ("and", "or"):
        if not args:
            raise InvalidInputError(f"filter: {op!r} needs arguments")
        masks = [sub(a) for a in args]
        return np.logical_and.reduce(masks) if low == "and" else np.logical_or.reduce(masks)
    if low == "not":
        if len(args) != 1:
            raise InvalidInputError("filter: 'not' takes one argument")
        return ~sub(args[0])
    if low == "isnull":
        if len(args) != 1:
            raise InvalidInputError("filter: 'isNull' takes one argument")
        _, s = _series(table, _prop_name(args[0]), collection)
        return s.isna().to_numpy()
    if op in _CMP:
        if len(args) != 2:
            raise InvalidInputError(f"filter: {op!r} takes two arguments")
        prop, value = _prop_and_value(args)
        kind, s = _series(table, prop, collection)
        return np.asarray(_CMP[op](s, _literal(kind, value, prop)), dtype=bool)
    if low == "between":
        if len(args) == 2 and isinstance(args[1], list) and len(args[1]) == 2:
            args = [args[0], *args[1]]  # the draft form [property, [low, high]]
        if len(args) != 3:
            raise InvalidInputError("filter: 'between' takes a property and two values")
        prop = _prop_name(args[0])
        kind, s = _series(table, prop, collection)
        lo, hi = _literal(kind, args[1], prop), _literal(kind, args[2], prop)
        return np.asarray((s >= lo) & (s <= hi), dtype=bool)
    if low == "in":
        if len(args) != 2 or not isinstance(args[1], list):
            raise InvalidInputError("filter: 'in' takes a property and a list of values")
        prop = _prop_name(args[0])
        kind, s = _series(table, prop, collection)
        return s.isin([_literal(kind, v, prop) for v in args[1]]).to_numpy()
    if low == "like":
        if len(args) != 2 or not isinstance(args[1], str):
            raise InvalidInputError("filter: 'like' takes a property and a pattern string")
        prop = _prop_name(args[0])
        kind, s = _series(table, prop, collection)
        if kind != "string":
            raise InvalidInputError(f"filter: 'like' applies to strings, {prop} is a {kind}")
        rx = _like_regex(args[1])
        return np.fromiter(
            (bool(rx.fullmatch(v)) if isinstance(v, str) else False for v in s),
            dtype=bool,
            count=len(s),
        )
    raise InvalidInputError(f"filter: unsupported operator {op!r:.50}; supported: {_OPS}")


def _prop_name(arg: Any) -> str:
    if isinstance(arg, Mapping) and "property" in arg:
        return str(arg["property"])
    raise InvalidInputError(f"filter: expected {{'property': name}}, got {arg!r:.200}")


def _prop_and_value(args: list) -> tuple[str, Any]:
    a, b = args
    if isinstance(a, Mapping) and "property" in a:
        return str(a["property"]), b
    if isinstance(b, Mapping) and "property" in b:
        raise InvalidInputError(
            "filter: put the property first, e.g. {'op': '>=', 'args': [{'property': 'date_dt'}, 6]}"
        )
    raise InvalidInputError("filter: a comparison needs a {'property': name} argument")


# --------------------------------------------------------------------------- CQL2 text

_QUOTED = re.compile(r"'(?:[^']|'')*'")
_NOT = re.compile(r"\bnot\b", re.IGNORECASE)
_SIGNS = re.compile(r"[-+]\s*[-+]")


def _check_text(text: str) -> None:
    """Refuse CQL2 text whose parsing could exhaust the native parser's stack."""
    if len(text) > MAX_FILTER_TEXT:
        raise InvalidInputError(f"filter is longer than {MAX_FILTER_TEXT} characters")
    bare = _QUOTED.sub("''", text)
    level = deepest = 0
    for c in bare:
        if c == "(":
            level += 1
            deepest = max(deepest, level)
        elif c == ")":
            level -= 1
    if deepest > MAX_FILTER_DEPTH:
        raise InvalidInputError(f"filter is nested more than {MAX_FILTER_DEPTH} levels deep")
    if len(_NOT.findall(bare)) > MAX_FILTER_DEPTH:
        raise InvalidInputError(f"filter has more than {MAX_FILTER_DEPTH} NOT operators")
    if _SIGNS.search(bare):
        raise InvalidInputError("filter: repeated sign operators")
    if sum(bare.count(c) for c in "+*/%^") > MAX_FILTER_DEPTH:
        raise InvalidInputError("filter: too many arithmetic operators")


def parse_cql2_text(text: str) -> dict[str, Any] | bool:
    """CQL2 text -> CQL2-JSON (with the ``cql2`` package), after a size/nesting guard.

    Raises
    ------
    InvalidInputError
        When the text is too large, too deeply nested, or not CQL2.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("filter: empty CQL2 text")
    _check_text(text)
    try:
        import cql2
    except ImportError:  # pragma: no cover - cql2 is part of the [server] extra
        raise InvalidInputError(
            "filter-lang cql2-text needs the 'cql2' package (pip install 'itslive_dask[server]')"
        ) from None
    try:
        out = cql2.Expr(text).to_json()
    except Exception as exc:  # cql2 raises plain Exception / ParseError with a caret message
        msg = " ".join(str(exc).split())
        raise InvalidInputError(f"filter is not valid CQL2 text: {msg:.300}") from None
    if not isinstance(out, dict | bool):
        raise InvalidInputError("filter: CQL2 text must be a boolean expression")
    return out


# --------------------------------------------------------------------------- query extension

_QUERY_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_STRING_OPS = {
    "startsWith": lambda s, v: s.str.startswith(v),
    "endsWith": lambda s, v: s.str.endswith(v),
    "contains": lambda s, v: s.str.contains(v, regex=False),
}


def eval_query_extension(
    table: pd.DataFrame, query: Any, *, collection: str = "itslive-granules"
) -> np.ndarray:
    """Boolean mask for a STAC query-extension object ``{prop: {op: value}}``.

    Operators: ``eq``, ``neq``, ``lt``, ``lte``, ``gt``, ``gte``, ``in``, and on strings
    ``startsWith``, ``endsWith``, ``contains``.
    """
    if not isinstance(query, Mapping):
        raise InvalidInputError("query must be an object such as {'date_dt': {'lte': 120}}")
    mask = np.ones(len(table), dtype=bool)
    for prop, ops in query.items():
        if not isinstance(ops, Mapping) or not ops:
            raise InvalidInputError(f"query[{prop!r:.100}] must be an object such as {{'gte': 6}}")
        kind, s = _series(table, prop, collection)
        for op, value in ops.items():
            if op == "in":
                if not isinstance(value, list):
                    raise InvalidInputError(f"query[{prop!r}]['in'] must be a list")
                mask &= s.isin([_literal(kind, v, prop) for v in value]).to_numpy()
            elif op in _QUERY_OPS:
                mask &= np.asarray(_CMP[_QUERY_OPS[op]](s, _literal(kind, value, prop)), dtype=bool)
            elif op in _STRING_OPS:
                if kind != "string" or not isinstance(value, str):
                    raise InvalidInputError(
                        f"query[{prop!r}]: {op} compares strings with a string, got {value!r:.100}"
                    )
                mask &= np.asarray(_STRING_OPS[op](s.astype(str), value), dtype=bool)
            else:
                raise InvalidInputError(
                    f"query[{prop!r}]: unsupported operator {op!r:.50}; use eq, neq, lt, lte, "
                    "gt, gte, in, startsWith, endsWith, contains"
                )
    return mask
