"""A report's table: a title, a header, rows of text, and the words that say how to read it; written as
Markdown or HTML (every cell escaped for each), and shown in a terminal by `views.report`."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


def markdown_text(text: str) -> str:
    """Text as Markdown shows it, whatever it holds: HTML's special characters as entities (Markdown passes
    raw HTML through to the page), and a pipe or a line break, which would add a column or end a row."""
    return escape(text.replace("\\", "\\\\"), quote=False).replace("|", "\\|").replace("\n", " ")


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""  # how to read the table
    footnote: str = ""  # what a mark in its cells means; the terminal shows it too

    def markdown(self) -> str:
        def row(cells: list[str]) -> str:
            return "| " + " | ".join(map(markdown_text, cells)) + " |"

        lines = [f"### {markdown_text(self.title)}", "", row(self.header), "|" + "---|" * len(self.header)]
        lines += [row(cells) for cells in self.rows]
        return "\n".join(lines + [f"\n{markdown_text(text)}" for text in (self.footnote, self.note) if text])

    def html(self, css_class: str = "") -> str:
        cells = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        notes = "".join(f"<p>{escape(text)}</p>" for text in (self.footnote, self.note) if text)
        kind = f' class="{css_class}"' if css_class else ""
        return f"<h3>{escape(self.title)}</h3><table{kind}><tr>{cells}</tr>{body}</table>{notes}"
