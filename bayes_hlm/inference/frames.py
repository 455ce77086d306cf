"""Report tables: a DataFrame that renders as a styled notebook table and exports to
Markdown / LaTeX, with its caption and notes (e.g. why a reference column is empty) printed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ReportFrame"]


def _text_formatters(df: pd.DataFrame) -> dict:
    """Fixed decimals for printing: counts (ESS) as integers, everything else to 3 decimals,
    NaN blank. pandas' default switches a whole column to scientific notation as soon as one
    value is small (a diff of 7e-4 beside 0.4), which reads badly in a report."""
    def fixed(digits):
        return lambda v: "" if v is None or (isinstance(v, float) and not np.isfinite(v)) \
            else f"{v:.{digits}f}"

    out = {}
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col].dtype):
            out[col] = fixed(0 if str(col).startswith("ess") else 3)
    return out


class ReportFrame(pd.DataFrame):
    """A DataFrame that renders as a styled table in notebooks and exports to Markdown/LaTeX.

    ``caption`` (a title) and ``note`` (e.g. why a reference column is empty) are shown by
    ``print``/``repr``, the notebook rendering and the Markdown export.
    """

    _metadata = ["caption", "note"]
    caption: str | None = None
    note: str | None = None

    @property
    def _constructor(self):
        return ReportFrame

    def styled(self, digits: int = 3):
        """A pandas ``Styler``: fixed digits, |diff_in_post_sd| > 2 highlighted, NaN as blank."""
        sty = self.style.format(precision=digits, na_rep="")
        if "diff_in_post_sd" in self.columns:
            sty = sty.map(lambda v: "background-color:#fde0dd;font-weight:bold"
                          if isinstance(v, (float, int)) and np.isfinite(v) and abs(v) > 2 else "",
                          subset=["diff_in_post_sd"])
        cap = getattr(self, "caption", None)
        if cap:
            sty = sty.set_caption(cap)
        return sty.set_table_styles([{"selector": "th", "props": "text-align:left"}])

    def __repr__(self) -> str:
        parts = [self.caption] if self.caption else []
        parts.append(pd.DataFrame(self).to_string(formatters=_text_formatters(self), na_rep=""))
        if self.note:
            parts.append(f"Note: {self.note}")
        return "\n".join(parts)

    def _repr_html_(self) -> str:  # noqa: D401 - IPython hook
        try:
            out = self.styled().to_html()
        except ImportError:  # jinja2 missing: plain pandas rendering
            out = pd.DataFrame(self).to_html(float_format=lambda v: f"{v:.3f}", na_rep="")
        if self.note:
            import html

            out += f"<p><b>Note:</b> {html.escape(self.note)}</p>"
        return out

    def to_markdown(self, buf=None, digits: int = 3, **_: Any) -> str | None:
        """GitHub-flavoured Markdown table (index included)."""
        df = pd.DataFrame(self)
        idx_names = [n or "" for n in df.index.names]

        def fmt(v):
            if isinstance(v, (float, np.floating)):
                return "" if not np.isfinite(v) else f"{v:.{digits}f}"
            return str(v)

        head = idx_names + [str(c) for c in df.columns]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for key, row in df.iterrows():
            keys = list(key) if isinstance(key, tuple) else [key]
            lines.append("| " + " | ".join([str(k) for k in keys] + [fmt(v) for v in row]) + " |")
        if self.note:
            lines += ["", f"*Note: {self.note}*"]
        text = "\n".join(lines) + "\n"
        if buf is None:
            return text
        buf.write(text)
        return None

    def to_latex(self, *args, float_format=None, na_rep: str = "", **kwargs) -> str | None:
        """LaTeX tabular (pandas ``to_latex`` with 3-digit floats and blank NaN)."""
        return pd.DataFrame(self).to_latex(*args, float_format=float_format or "{:.3f}".format,
                                           na_rep=na_rep, **kwargs)
