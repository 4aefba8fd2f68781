"""A report's table: a title, a header, rows of text, and the words that say how to read it; written as
Markdown or HTML (every cell escaped for each), and shown in a terminal by `views.report`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape


def p_value(p: float | None) -> str:
    """A p-value as every table of the report prints it: three decimals, and `< 0.001` below them."""
    return "-" if p is None or math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown_text(text: str) -> str:
    """Text as Markdown shows it, whatever it holds: HTML's special characters as entities (Markdown passes
    raw HTML through to the page), and a pipe or a line break, which would add a column or end a row."""
    return escape(text.replace("\\", "\\\\"), quote=False).replace("|", "\\|").replace("\n", " ")


@dataclass
class Table:
    title: str
    header: list[str]  # none: a table of words only (its lead says why there are no rows)
    rows: list[list[str]]
    note: str = ""  # how to read the table
    footnote: str = ""  # what a mark in its cells means; the terminal shows it too
    lead: list[str] = field(default_factory=list)  # paragraphs above the rows: what the table answers, in words

    def markdown(self) -> str:
        def row(cells: list[str]) -> str:
            return "| " + " | ".join(map(markdown_text, cells)) + " |"

        lines = [f"### {markdown_text(self.title)}", ""] + [f"{markdown_text(text)}\n" for text in self.lead]
        if self.header:
            lines += [row(self.header), "|" + "---|" * len(self.header)] + [row(cells) for cells in self.rows]
        return "\n".join(lines + [f"\n{markdown_text(text)}" for text in (self.footnote, self.note) if text]).rstrip()

    def html(self, css_class: str = "") -> str:
        lead = "".join(f"<p>{escape(text)}</p>" for text in self.lead)
        notes = "".join(f"<p>{escape(text)}</p>" for text in (self.footnote, self.note) if text)
        if not self.header:
            return f"<h3>{escape(self.title)}</h3>{lead}{notes}"
        cells = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        kind = f' class="{css_class}"' if css_class else ""
        return f"<h3>{escape(self.title)}</h3>{lead}<table{kind}><tr>{cells}</tr>{body}</table>{notes}"
