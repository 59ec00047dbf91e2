"""Reports as PDF (signed and filed): the same blocks as the HTML report, set with fpdf2 (pure Python) in
DejaVu, a Unicode TrueType font with every Vietnamese letter, read from the Debian package fonts-dejavu-core
(`/usr/share/fonts/truetype/dejavu`, or `NRM_REPORT_FONT_DIR`). Nothing is fetched at run time."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

_FIGURE = re.compile(r"^[\d.,%<>≥—\s-]+$")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
REGULAR, BOLD, ITALIC = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf"


class FontMissing(RuntimeError):
    """The Unicode font is not installed (apt-get install fonts-dejavu-core)."""


def font_dir() -> Path:
    env = os.environ.get("NRM_REPORT_FONT_DIR")
    for d in ((Path(env),) if env else ()) + FONT_DIRS:
        if (d / REGULAR).is_file() and (d / BOLD).is_file():
            return d
    raise FontMissing(
        "the PDF report needs the DejaVu fonts: apt-get install fonts-dejavu-core "
        "(or set NRM_REPORT_FONT_DIR to a folder holding DejaVuSans.ttf and DejaVuSans-Bold.ttf)"
    )


class _Doc(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("dejavu", "", 8)
        self.cell(0, 6, f"{self.page_no()}/{{nb}}", align="C")


def to_pdf(title: str, to: str, blocks: list[tuple[Any, ...]]) -> bytes:
    d = font_dir()
    pdf = _Doc(format="A4")
    pdf.set_margins(20, 15, 15)
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_font("dejavu", "", str(d / REGULAR))
    pdf.add_font("dejavu", "B", str(d / BOLD))
    pdf.add_font("dejavu", "I", str(d / (ITALIC if (d / ITALIC).is_file() else REGULAR)))
    pdf.set_title(title)
    pdf.add_page()
    pdf.set_font("dejavu", "", 11)
    pdf.multi_cell(0, 6, to, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("dejavu", "B", 13)
    pdf.multi_cell(0, 7, title.upper(), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for b in blocks:
        kind = b[0]
        if kind == "h2":
            pdf.ln(2)
            pdf.set_font("dejavu", "B", 11)
            pdf.multi_cell(0, 6, b[1], new_x="LMARGIN", new_y="NEXT")
        elif kind in ("p", "note"):
            pdf.set_font("dejavu", "I" if kind == "note" else "", 9 if kind == "note" else 10)
            pdf.multi_cell(0, 5.5, b[1], new_x="LMARGIN", new_y="NEXT")
        elif kind == "table":
            _table(pdf, b[1], b[2])
        elif kind == "list":
            for head, text in b[1]:
                pdf.set_font("dejavu", "B", 9)
                pdf.multi_cell(0, 5, head, new_x="LMARGIN", new_y="NEXT")
                pdf.set_font("dejavu", "", 9)
                pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
    return bytes(pdf.output())


def _table(pdf: FPDF, headers: list[str], rows: list[list[str]]) -> None:
    if not rows:
        pdf.set_font("dejavu", "I", 9)
        pdf.multi_cell(0, 5, "—", new_x="LMARGIN", new_y="NEXT")
        return
    n = len(headers)
    # columns of words (stage, agency, labels) are left-aligned and wider; columns of figures right-aligned
    words = [not all(_FIGURE.match(r[i] or "-") for r in rows) for i in range(n)]
    widths = tuple((2.5 if sum(words) == 1 else 2) if w else 1.3 for w in words)
    pdf.set_font("dejavu", "", 9)
    with pdf.table(
        col_widths=widths,
        text_align=tuple("LEFT" if w else "RIGHT" for w in words),
        line_height=5,
        headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
        padding=1,
    ) as t:
        head = t.row()
        for h in headers:
            head.cell(h)
        for r in rows:
            row = t.row()
            for c in r:
                row.cell(c)
    pdf.ln(1)
