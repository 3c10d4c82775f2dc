"""LaTeX for the report's tables: escaping plain text, and the width a tabular will take in
Computer Modern (estimated, so that a table can be fitted to the text width before LaTeX sets it)."""
import re


TEXT_WIDTH_PT = 7 * 72.27      # 7 in in TeX points
FONTS = ((r"\small", 9.0, 4.0), (r"\footnotesize", 8.0, 3.0))   # command, size (pt), tabcolsep (pt)


_TEX = {"%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
        "±": r"$\pm$", "×": r"$\times$", "ℓ": r"$\ell$", "—": "--", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$",
        "→": r"$\to$", "λ": r"$\lambda$", "Δ": r"$\Delta$", "−": "$-$", "[": "{[}", "]": "{]}",
        "▶": r"$\triangleright$", "₁": r"$_1$"}


def tex_escape(text):
    """Plain text -> LaTeX: ℓ1 / ℓ₁ as $\\ell_1$, ± × → λ as math, specials escaped."""
    text = re.sub(r"ℓ[1₁]", "\0L1\0", str(text))
    out = "".join(_TEX.get(ch, ch) for ch in text)
    return out.replace("\0L1\0", r"$\ell_1$")


# ------------------------------------------------------------------------- width estimate

# Computer Modern Roman advance widths at 10 pt (cmr10.tfm; cmsy10 for ± ×), in pt
_CM = dict(zip("abcdefghijklmnopqrstuvwxyz",
               (5.0, 5.56, 4.44, 5.56, 4.44, 3.06, 5.0, 5.56, 2.78, 3.06, 5.28, 2.78, 8.33, 5.56, 5.0, 5.56,
                5.28, 3.92, 3.94, 3.89, 5.56, 5.28, 7.22, 5.28, 5.28, 4.44)))
_CM.update(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ",
               (7.5, 7.08, 7.22, 7.64, 6.81, 6.53, 7.85, 7.5, 3.61, 5.14, 7.78, 6.25, 9.17, 7.5, 7.78, 6.81,
                7.78, 7.36, 5.56, 7.22, 7.5, 7.5, 10.28, 7.5, 7.5, 6.11)))
_CM.update({c: 5.0 for c in "0123456789"})
_CM.update({".": 2.78, ",": 2.78, " ": 3.33, "(": 3.89, ")": 3.89, "%": 8.33, "+": 7.78, "-": 3.33,
            "=": 7.78, "±": 7.78, "×": 7.78, "ℓ": 4.17, "₁": 3.5, "—": 5.0, "–": 5.0, "/": 5.0, ":": 2.78,
            "'": 2.78, "→": 10.0, "λ": 5.83, "≥": 7.78, "≤": 7.78, "*": 5.0, "[": 2.78, "]": 2.78})


# cmr9 and cmr8 are drawn wider than cmr10 scaled down (digits 0.514 and 0.531 em, not 0.5)
_OPTICAL = {9.0: 1.028, 8.0: 1.062}
FIT = 0.97 * TEXT_WIDTH_PT     # what the writer fits to: a 3% margin on the estimate


# A cell that starts with BOLD is set in \textbf: Computer Modern Bold Extended is 15% wider
# (cmbx10 against cmr10: digits 5.75 against 5.0 pt, space 3.83 against 3.33, '.' 3.19 against
# 2.78); math symbols (± ×, from cmsy) keep their width. pdflatex measures "91.23 $\pm$ 0.12" in
# \footnotesize at 46.75 pt, 52.89 pt in bold: a stacked table of bold-widest columns was
# estimated 6% narrow before bold was counted.
BOLD = "\x01"
_BOLD_FACTOR = 1.15
_MATH = set("±×→≥≤λΔ−")


def text_width(text, size=10.0):
    """Estimated width (pt) of text set in Computer Modern at `size` pt (bold where it
    starts with BOLD)."""
    text = str(text)
    bold = text.startswith(BOLD)
    text = text[1:] if bold else text
    w = sum(_CM.get(ch, 6.0) * (_BOLD_FACTOR if bold and ch not in _MATH else 1.0) for ch in text)
    return w * size / 10.0 * _OPTICAL.get(float(size), 1.0)


def tex_width(columns, size, sep):
    """Estimated width (pt) of a tabular: per column its widest cell (a cell may hold several
    lines), plus 2 x tabcolsep per column (less the outer @{} ones)."""
    w = 0.0
    for cells in columns:
        w += max(text_width(line, size) for c in cells for line in str(c).split("\n")) + 2 * sep
    return w - 2 * sep


# ------------------------------------------------------------------------- tabular layout

def two_lines(h):
    """A header over at most three lines: the name broken at the space nearest its middle when
    it is longer than 12 characters, and a budget (', 160 ep') on a line of its own."""
    name, ep = (h.rsplit(", ", 1) + [""])[:2] if h.endswith(" ep") else (h, "")
    lines = [name]
    if len(name) > 12 and " " in name:
        spaces = [i for i, ch in enumerate(name) if ch == " "]
        i = min(spaces, key=lambda k: abs(k - len(name) / 2))
        lines = [name[:i], name[i + 1:]]
    return lines + ([ep] if ep else [])


def tex_head(lines):
    if len(lines) == 1:
        return tex_escape(lines[0])
    return r"\begin{tabular}[b]{@{}c@{}}" + r"\\".join(tex_escape(x) for x in lines) + r"\end{tabular}"


def column_parts(cols, size, sep):
    """The value columns (indices into cols) of each stacked tabular, so that each fits."""
    parts, cur = [], []
    first = tex_width([cols[0]], size, sep) + 2 * sep
    for j in range(1, len(cols)):
        if cur and first + tex_width([cols[i] for i in cur + [j]], size, sep) > FIT:
            parts.append(cur)
            cur = []
        cur.append(j)
    return parts + ([cur] if cur else [])


def tex(header, rows, caption, label, align=None):
    """A plain booktabs table* (any header and rows) in \\small."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    body = [r"\begin{table*}[t]", r"\centering", rf"\caption{{{tex_escape(caption)}}}", rf"\label{{{label}}}",
            r"\small", r"\setlength{\tabcolsep}{4pt}",
            r"\begin{tabular}{@{}" + "".join(align) + "@{}}", r"\toprule",
            " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule"]
    body += [" & ".join(tex_escape(c).replace(" (", "~(") for c in r) + r" \\" for r in rows]
    body += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(body) + "\n"
