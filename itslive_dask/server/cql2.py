"""Attribute filters of the STAC API subset: CQL2-JSON (basic) and the query extension.

Both are evaluated on the granule table, column by column (no row loop). Queryable
properties are those of the public ``itslive-granules`` items; ``dt_days`` (the name the public
API's queryables use) is an alias of ``date_dt``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from itslive_dask.errors import InvalidInputError

__all__ = ["QUERYABLES", "eval_cql2", "eval_query_extension", "queryables_schema"]


def _col(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda t: t[name]


#: STAC property -> (kind, accessor on the granule table, description)
QUERYABLES: dict[str, tuple[str, Callable[[pd.DataFrame], pd.Series], str]] = {
    "id": ("string", _col("granule_id"), "Granule id (file name without .nc)"),
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


def _series(table: pd.DataFrame, prop: Any) -> tuple[str, pd.Series]:
    if not isinstance(prop, str) or prop not in QUERYABLES:
        raise InvalidInputError(
            f"unknown property {prop!r} in filter; queryables: {', '.join(QUERYABLES)}"
        )
    kind, get, _ = QUERYABLES[prop]
    return kind, get(table)


def _literal(kind: str, value: Any, prop: str) -> Any:
    if isinstance(value, Mapping):
        if "timestamp" in value:
            value = value["timestamp"]
        elif "date" in value:
            value = value["date"]
        else:
            raise InvalidInputError(f"unsupported literal {value!r} for {prop}")
    if kind == "number":
        if isinstance(value, bool):
            raise InvalidInputError(f"{prop} compares to numbers, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{prop} compares to numbers, got {value!r}") from None
        if not np.isfinite(f):
            raise InvalidInputError(f"{prop}: {value!r} is not a finite number")
        return f
    if kind == "datetime":
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{prop} compares to date-times, got {value!r}") from None
        if pd.isna(ts):
            raise InvalidInputError(f"{prop} compares to date-times, got {value!r}")
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidInputError(f"{prop} compares to strings, got {value!r}")
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


def eval_cql2(table: pd.DataFrame, expr: Any, depth: int = 0) -> np.ndarray:
    """Boolean mask of the rows of ``table`` satisfying a CQL2-JSON expression.

    Supported: ``and``, ``or``, ``not``, ``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``,
    ``between``, ``in``, ``isNull`` on the :data:`QUERYABLES`, with number, string,
    ``{"timestamp": ...}`` and ``{"date": ...}`` literals.

    Raises
    ------
    InvalidInputError
        Malformed or unsupported expressions, unknown properties, wrong literal types.
    """
    if depth > 50:
        raise InvalidInputError("filter is nested too deeply")
    if isinstance(expr, bool):
        return np.full(len(table), expr)
    if not isinstance(expr, Mapping) or "op" not in expr:
        raise InvalidInputError(
            f"filter: expected an object with 'op' and 'args', got {expr!r:.200}"
        )
    op = str(expr["op"])
    args = expr.get("args")
    if not isinstance(args, list):
        raise InvalidInputError(f"filter: 'args' of {op!r} must be a list")
    low = op.lower()
    if low in ("and", "or"):
        if not args:
            raise InvalidInputError(f"filter: {op!r} needs arguments")
        masks = [eval_cql2(table, a, depth + 1) for a in args]
        return np.logical_and.reduce(masks) if low == "and" else np.logical_or.reduce(masks)
    if low == "not":
        if len(args) != 1:
            raise InvalidInputError("filter: 'not' takes one argument")
        return ~eval_cql2(table, args[0], depth + 1)
    if low == "isnull":
        if len(args) != 1:
            raise InvalidInputError("filter: 'isNull' takes one argument")
        _, s = _series(table, _prop_name(args[0]))
        return s.isna().to_numpy()
    if op in _CMP:
        if len(args) != 2:
            raise InvalidInputError(f"filter: {op!r} takes two arguments")
        prop, value = _prop_and_value(args)
        kind, s = _series(table, prop)
        return np.asarray(_CMP[op](s, _literal(kind, value, prop)), dtype=bool)
    if low == "between":
        if len(args) != 3:
            raise InvalidInputError("filter: 'between' takes a property and two values")
        prop = _prop_name(args[0])
        kind, s = _series(table, prop)
        lo, hi = _literal(kind, args[1], prop), _literal(kind, args[2], prop)
        return np.asarray((s >= lo) & (s <= hi), dtype=bool)
    if low == "in":
        if len(args) != 2 or not isinstance(args[1], list):
            raise InvalidInputError("filter: 'in' takes a property and a list of values")
        prop = _prop_name(args[0])
        kind, s = _series(table, prop)
        return s.isin([_literal(kind, v, prop) for v in args[1]]).to_numpy()
    raise InvalidInputError(
        f"filter: unsupported operator {op!r}; supported: and, or, not, =, <>, <, <=, >, >=, "
        "between, in, isNull"
    )


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


_QUERY_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def eval_query_extension(table: pd.DataFrame, query: Any) -> np.ndarray:
    """Boolean mask for a STAC query-extension object ``{prop: {op: value}}``.

    Operators: ``eq``, ``neq``, ``lt``, ``lte``, ``gt``, ``gte``, ``in``.
    """
    if not isinstance(query, Mapping):
        raise InvalidInputError("query must be an object such as {'date_dt': {'lte': 120}}")
    mask = np.ones(len(table), dtype=bool)
    for prop, ops in query.items():
        if not isinstance(ops, Mapping) or not ops:
            raise InvalidInputError(f"query[{prop!r}] must be an object such as {{'gte': 6}}")
        kind, s = _series(table, prop)
        for op, value in ops.items():
            if op == "in":
                if not isinstance(value, list):
                    raise InvalidInputError(f"query[{prop!r}]['in'] must be a list")
                mask &= s.isin([_literal(kind, v, prop) for v in value]).to_numpy()
            elif op in _QUERY_OPS:
                mask &= np.asarray(_CMP[_QUERY_OPS[op]](s, _literal(kind, value, prop)), dtype=bool)
            else:
                raise InvalidInputError(
                    f"query[{prop!r}]: unsupported operator {op!r}; use eq, neq, lt, lte, gt, gte, in"
                )
    return mask
