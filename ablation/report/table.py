"""A report's table: a title, a header, rows of text, and the words that say how to read it; written as
Markdown or HTML (every cell escaped), and shown in a terminal by `views.report`."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""  # how to read the table
    footnote: str = ""  # what a mark in its cells means; the terminal shows it too

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines + [f"\n{text}" for text in (self.footnote, self.note) if text])

    def html(self, css_class: str = "") -> str:
        cells = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        notes = "".join(f"<p>{escape(text)}</p>" for text in (self.footnote, self.note) if text)
        kind = f' class="{css_class}"' if css_class else ""
        return f"<h3>{escape(self.title)}</h3><table{kind}><tr>{cells}</tr>{body}</table>{notes}"
