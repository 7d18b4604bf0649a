"""Generate docs/api.md (public Python API) and docs/cli.md (command line) from the code.

Run from the repository root::

    .venv/bin/python docs/gen_api.py            # writes docs/api.md and docs/cli.md
    .venv/bin/python docs/gen_api.py --check    # exit 1 if the committed files are stale

The API page lists every name exported by ``itslive_dask`` (``itslive_dask.__all__``), grouped
by module, with its signature and its numpydoc docstring turned into Markdown. The CLI page
lists every command of ``itslive-dask`` with its options, defaults and help text.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parent

#: Order and titles of the API page's sections (module -> title).
SECTIONS: dict[str, str] = {
    "discovery.api": "Search",
    "discovery.filters": "Filter",
    "io.download": "Download",
    "discovery.catalog": "Catalog files",
    "server": "Local search server",
    "testing.local_s3": "Local S3 server",
    "geo.region": "Regions",
    "table": "The granule table",
    "granule.names": "Granule files",
    "io.dataset": "Granule files",
    "granule.info": "Granule files",
    "io.hdf5": "Granule files",
    "spec": "Cube engine",
    "geo.grid": "Cube engine",
    "cube.plan": "Cube engine",
    "cube.lazy": "Cube engine",
    "store.write": "Zarr stores",
    "store.state": "Zarr stores",
    "store.rechunk": "Zarr stores",
    "pipeline": "Zarr stores",
    "cluster": "Dask clusters",
    "analysis": "Analysis",
    "plots": "Plots",
    "demo": "Demo",
    "errors": "Errors",
}

#: Public names that live in a module but are not exported at the package root.
EXTRA: tuple[tuple[str, str], ...] = (
    ("analysis", "describe_cube"),
    ("analysis", "cube_crs"),
    ("plots", "plot_speed_histogram"),
    ("demo", "run_demo"),
    ("demo", "truth_accuracy"),
)

_NUMPYDOC_SECTIONS = (
    "Parameters", "Returns", "Yields", "Raises", "Attributes", "Notes", "Examples",
    "See Also", "Warns", "Other Parameters", "References",
)  # fmt: skip
_LIST_SECTIONS = (
    "Parameters",
    "Returns",
    "Yields",
    "Raises",
    "Attributes",
    "Warns",
    "Other Parameters",
)


def rst_inline(text: str) -> str:
    """RST inline markup -> Markdown (``code``, :func:`name`, *emphasis* stays)."""
    text = re.sub(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return text


def split_sections(doc: str) -> list[tuple[str, list[str]]]:
    """(section title or '', lines) in order; numpydoc underlined headers start sections."""
    lines = doc.splitlines()
    out: list[tuple[str, list[str]]] = [("", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        title = line.strip()
        if title in _NUMPYDOC_SECTIONS and set(nxt.strip()) == {"-"}:
            out.append((title, []))
            i += 2
            continue
        out[-1][1].append(line)
        i += 1
    return out


def render_list(lines: list[str]) -> str:
    """numpydoc 'name : type' entries with indented descriptions -> a Markdown list."""
    items: list[tuple[str, list[str]]] = []
    for line in lines:
        if not line.strip():
            if items:
                items[-1][1].append("")
            continue
        if not line.startswith((" ", "\t")):
            items.append((line.strip(), []))
        elif items:
            items[-1][1].append(line.strip())
    md = []
    for head, desc in items:
        if " : " in head:
            name, typ = head.split(" : ", 1)
            label = f"**{name.strip()}** (`{typ.strip()}`)"
        elif head.replace("_", "").replace(",", "").replace(
            " ", ""
        ).isalnum() and " " not in head.strip(", "):
            label = f"**{head}**"
        elif "," in head and all(p.strip().isidentifier() for p in head.split(",")):
            label = ", ".join(f"**{p.strip()}**" for p in head.split(","))
        else:
            label = f"`{head}`"
        text = " ".join(d for d in desc if d)
        md.append(f"- {label}" + (f": {rst_inline(text)}" if text else ""))
    return "\n".join(md)


def render_docstring(doc: str | None) -> str:
    if not doc:
        return "*(no docstring)*"
    doc = inspect.cleandoc(doc)
    parts = []
    for title, lines in split_sections(doc):
        body = "\n".join(lines).strip("\n")
        if not title:
            parts.append(rst_inline(_rst_blocks(body)))
        elif title in _LIST_SECTIONS:
            parts.append(f"**{title}**\n\n{render_list(lines)}")
        elif title == "Examples":
            code = re.sub(r"[ \t]*# doctest: \+SKIP", "", textwrap.dedent(body).strip())
            parts.append(f"**{title}**\n\n```python\n{code}\n```")
        else:
            parts.append(f"**{title}**\n\n{rst_inline(_rst_blocks(textwrap.dedent(body)))}")
    return "\n\n".join(p for p in parts if p.strip())


def _rst_blocks(text: str) -> str:
    """'::' literal blocks -> fenced code; definition-style indented paragraphs kept."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(
                line.rstrip()[:-1] if not line.rstrip().endswith(" ::") else line.rstrip()[:-3]
            )
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            code = textwrap.dedent("\n".join(block)).strip("\n")
            out += ["", "```", code, "```", ""]
            continue
        out.append(line[4:] if line.startswith("    ") and not line.startswith("     ") else line)
        i += 1
    return "\n".join(out)


def signature(obj) -> str:
    name = obj.__name__
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    ret = (
        ""
        if sig.return_annotation is inspect.Signature.empty
        else f" -> {_ann(sig.return_annotation)}"
    )
    text = f"{name}({', '.join(_param(p) for p in sig.parameters.values())}){ret}"
    if len(text) <= 90:
        return text
    params = [_param(p) for p in sig.parameters.values()]
    # keyword-only marker
    rendered = []
    seen_kw = False
    for p, prm in zip(params, sig.parameters.values(), strict=True):
        if prm.kind is inspect.Parameter.KEYWORD_ONLY and not seen_kw:
            rendered.append("*")
            seen_kw = True
        if prm.kind is inspect.Parameter.VAR_POSITIONAL:
            seen_kw = True
        rendered.append(p)
    return f"{name}(\n" + "".join(f"    {r},\n" for r in rendered) + f"){ret}"


def _ann(a) -> str:
    return a if isinstance(a, str) else getattr(a, "__name__", str(a))


def _param(p: inspect.Parameter) -> str:
    """A parameter as written in code (annotations unquoted, defaults as repr)."""
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(
        p.kind, ""
    )
    text = prefix + p.name
    if p.annotation is not inspect.Parameter.empty:
        text += f": {_ann(p.annotation)}"
    if p.default is not inspect.Parameter.empty:
        text += (
            f" = {p.default!r}"
            if p.annotation is not inspect.Parameter.empty
            else f"={p.default!r}"
        )
    return text


def api_markdown() -> str:
    import itslive_dask

    groups: dict[str, list[tuple[str, object, str]]] = {}
    for name in itslive_dask.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(itslive_dask, name)
        module = itslive_dask._EXPORTS[name]
        title = SECTIONS.get(module, module)
        groups.setdefault(title, []).append((name, obj, module))
    import importlib

    for module, name in EXTRA:
        obj = getattr(importlib.import_module(f"itslive_dask.{module}"), name)
        groups.setdefault(SECTIONS.get(module, module), []).append((name, obj, module))
    order = list(dict.fromkeys(SECTIONS.values()))
    out = [
        "# API reference",
        "",
        "<!-- generated by docs/gen_api.py from the docstrings; do not edit by hand -->",
        "",
        "Everything below is importable from the package root (`import itslive_dask as itd`;",
        "`itd.search(...)`), except where the heading says another module. The command line is",
        "described in [cli.md](cli.md).",
        "",
        "## Contents",
        "",
    ]
    titles = [t for t in order if t in groups] + [t for t in groups if t not in order]
    for t in titles:
        names = ", ".join(f"[`{n}`](#{_anchor(n)})" for n, _, _ in groups[t])
        out.append(f"- **{t}**: {names}")
    for t in titles:
        out += ["", f"## {t}"]
        for name, obj, module in groups[t]:
            kind = "class" if inspect.isclass(obj) else "function"
            where = (
                "" if name in itslive_dask.__all__ else f" (import from `itslive_dask.{module}`)"
            )
            out += ["", f"### {name}", "", f"*{kind} in `itslive_dask.{module}`{where}*", ""]
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                out += [
                    f"```python\nclass {name}({', '.join(b.__name__ for b in obj.__bases__)})\n```",
                    "",
                ]
            else:
                out += ["```python", signature(obj), "```", ""]
            out.append(render_docstring(inspect.getdoc(obj)))
    return "\n".join(out).rstrip() + "\n"


def _anchor(name: str) -> str:
    return name.lower()


def cli_markdown() -> str:
    import typer

    from itslive_dask.cli.app import app

    group = typer.main.get_command(app)
    out = [
        "# Command line: `itslive-dask`",
        "",
        "<!-- generated by docs/gen_api.py from the CLI definition; do not edit by hand -->",
        "",
        rst_inline(inspect.cleandoc(group.help or "")),
        "",
        "Global flags, accepted anywhere on the line: `--debug` (tracebacks and debug logs),",
        "`-q/--quiet` (no progress output), `--version`. Exit status: 0 done, 1 error (one line on",
        "stderr), 2 usage error, 130 interrupted.",
        "",
    ]
    for name, cmd in group.commands.items():
        out += [f"## `itslive-dask {name}`", "", inspect.cleandoc(cmd.help or ""), ""]
        args = [p for p in cmd.params if getattr(p, "param_type_name", "") == "argument"]
        opts = [
            p
            for p in cmd.params
            if getattr(p, "param_type_name", "") == "option" and p.name != "help"
        ]
        usage = " ".join(
            [
                f"itslive-dask {name}",
                *(f"{(a.metavar or a.name).upper()}" for a in args),
                "[OPTIONS]",
            ]
        )
        out += ["```", usage, "```", ""]
        if args or opts:
            out += ["| option | default | description |", "|---|---|---|"]
        for p in args:
            out.append(f"| `{(p.metavar or p.name).upper()}` | | {_cell(p)} |")
        for p in opts:
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            default = "" if p.default in (None, False) or p.required else f"`{p.default}`"
            if p.required:
                default = "required"
            out.append(f"| {names} | {default} | {_cell(p)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _cell(p) -> str:
    return (getattr(p, "help", None) or "").replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are not up to date")
    args = parser.parse_args(argv)
    outputs = {DOCS / "api.md": api_markdown(), DOCS / "cli.md": cli_markdown()}
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p} is stale; run python docs/gen_api.py", file=sys.stderr)
        return 1 if stale else 0
    for p, text in outputs.items():
        p.write_text(text)
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
