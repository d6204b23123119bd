"""A self-contained HTML report page (tables via pandas, images by relative path)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.leaderboard { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
table.leaderboard th, table.leaderboard td { border: 1px solid #ccc; padding: 3px 8px;
  white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
table.leaderboard th { background: #f0f0f0; }
figure { display: inline-block; margin: 0.5em; }
figure img { max-width: 460px; border: 1px solid #ddd; }
.desc { color: #555; font-size: 0.9em; }
.warn { color: #a00; font-size: 0.9em; }
figcaption { font-size: 0.8em; color: #444; }
"""


def _figures(items: list[Path | tuple[Path, str]], out_dir: Path, css_class: str) -> str:
    """``<figure>`` per image; an item is a path or ``(path, caption)``."""
    out = []
    for item in items:
        p, caption = item if isinstance(item, tuple) else (item, item.stem)
        rel = html.escape(str(p.relative_to(out_dir)))
        out.append(
            f'<figure class="{css_class}"><img src="{rel}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return "\n".join(out)


def render(
    title: str,
    sections: list[dict],
    out_dir: Path,
    notes: list[str] | None = None,
) -> str:
    """HTML page; each section has ``key``, ``description``, ``table`` (a display frame),
    ``plots`` (paths or ``(path, caption)`` under ``out_dir``, in reading order), ``strips``
    and optional ``notes`` (warnings shown under the table)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for note in notes or []:
        parts.append(f"<p class='desc'>{html.escape(note)}</p>")
    if not sections:
        parts.append("<p>(no run records)</p>")
    for s in sections:
        table: pd.DataFrame = s["table"]
        parts += [
            f'<section id="group-{html.escape(s["key"])}">',
            f"<h2>Group {html.escape(s['key'])}</h2>",
            f"<p class='desc'>{html.escape(s['description'])}</p>",
            "<div class='scroll'>"
            + table.to_html(index=False, classes="leaderboard", border=0, escape=True)
            + "</div>",
            *(f"<p class='warn'>{html.escape(n)}</p>" for n in s.get("notes", [])),
            "<h3>Plots (most separating metric first; saturated metrics last)</h3>",
            _figures(s["plots"], out_dir, "plot"),
        ]
        if s["strips"]:
            parts += [
                "<h3>FP vs quantized frames (with amplified |quantized - FP| rows)</h3>",
                _figures(s["strips"], out_dir, "strip"),
            ]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
