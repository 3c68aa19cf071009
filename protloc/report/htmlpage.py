"""Self-contained HTML pages: tables and figures, images embedded.

A page is one file with no external link (no CSS, script or image fetched), so it renders the
same in the KFP UI's HTML viewer (a sandboxed iframe), in a browser opened on a laptop and in a
headless screenshot. The steps write it into their output folder as ``report.html``; the KFP
component hands the same file to the UI as an ``Output[HTML]``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protloc import storage
from protloc.folders import PAGE

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.7em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


@dataclass(frozen=True)
class Table:
    """A titled table: a header and rows of cells (floats shown with ``digits`` decimals)."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    digits: int = 4


@dataclass(frozen=True)
class Figure:
    """A titled PNG figure, embedded in the page as a data URI."""

    title: str
    png: bytes


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def render(title: str, lead: str, parts: Sequence[Table | Figure]) -> str:
    """The HTML of a page: a title, one lead line, then tables and figures in order."""
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="lead">{html.escape(lead)}</p>']
    for part in parts:
        body.append(f"<h2>{html.escape(part.title)}</h2>")
        if isinstance(part, Figure):
            data = base64.b64encode(part.png).decode("ascii")
            body.append(f'<img alt="{html.escape(part.title)}" src="data:image/png;base64,{data}">')
            continue
        head = "".join(f"<th>{html.escape(h)}</th>" for h in part.header)
        rows = "\n".join(
            "<tr>" + "".join(f"<td>{_cell(v, part.digits)}</td>" for v in row) + "</tr>"
            for row in part.rows
        )
        body.append(f"<table>\n<tr>{head}</tr>\n{rows}\n</table>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_page(out: str, title: str, lead: str, parts: Sequence[Table | Figure]) -> str:
    """Write ``{out}/report.html``; returns its URI."""
    uri = storage.join(out, PAGE)
    storage.write_text(uri, render(title, lead, parts))
    return uri


def figure(title: str, uri: str) -> Figure:
    """A figure a step already wrote (a PNG at ``uri``)."""
    return Figure(title, storage.read_bytes(uri))
