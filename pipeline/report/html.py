"""index.html of the report (jinja2, autoescaped): media are files beside it with relative paths,
so the folder opens from disk (file://) and can be copied or served as a whole."""

from __future__ import annotations

import math
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def render(report: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    return env.get_template("index.html.j2").render(report=report)


def write_html(report: dict, report_dir) -> Path:
    path = Path(report_dir) / "index.html"
    path.write_text(render(report), encoding="utf-8")
    return path
