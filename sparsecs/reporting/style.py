"""How an entry looks and reads: its display name, colour, marker and line.

Names: the method's label from the method registry (optim/), and for an entry that is a
variant of its method (xrda_channel, xrda_step, xrda_from_dense, sgd_half) the variant in
words: "xRDA (channel)", "xRDA (step schedule)", "xRDA (from dense)", "dense SGD (half
budget)", or the name the method gives the variant (optim/ `variants`: soft_threshold_sine is
"soft threshold, sine schedule", not "soft threshold (LATS) (sine)"); ℓ1 is written ℓ₁ in
text, $\\ell_1$ in LaTeX and matplotlib. A row reads as
"ResNet-20 ×0.5, Fashion-MNIST" (row_title).

Colours come from the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"; the
palette Wong 2011, Nature Methods 8:441, recommends for colour-blind readers) and one neutral
grey, handed out before yellow (a profile with eight methods, fashion's, would otherwise draw
one of them in yellow, faint on white):
the dense model is black; xRDA's and the baselines' entries choose first, then the
ablations: each method's first entry keeps its registry colour where that is an Okabe-Ito
colour not taken yet, every other entry takes the next free one (yellow, faint on white, only
when a figure has used every other colour). One figure never shows two entries in one colour
while the palette has a free one (Looks.figure), and entries that share a method differ in
marker and line as well. A new method needs no change here.
"""
import re

from sparsecs.optim import get_method

# Okabe-Ito plus a neutral grey, in the order free colours are handed out (yellow last: faint
# on white)
OKABE_ITO = {
    "vermillion": "#D55E00", "blue": "#0072B2", "bluish green": "#009E73", "orange": "#E69F00",
    "reddish purple": "#CC79A7", "sky blue": "#56B4E9", "grey": "#777777", "black": "#000000",
    "yellow": "#F0E442",
}
PALETTE = tuple(OKABE_ITO.values())
DENSE_COLOR = OKABE_ITO["black"]
YELLOW = OKABE_ITO["yellow"]
DASHES = ("-", "--", "-.", ":")
SPARE_MARKERS = ("h", "<", "d", "p", "8", "H")
# the figures' own marks (collapse ×, right edge ▶): an entry never draws with them; prox. SGD's
# X, open as a search round, read as a collapse
RESERVED = {"x": "<", "X": "<", "+": "h", ">": "<"}

VARIANTS = {"channel": "channel", "kernel": "kernel", "step": "step schedule", "from_dense": "from dense",
            "half": "half budget"}
MODELS = {"resnet": "ResNet", "vgg": "VGG", "densenet_bc": "DenseNet-BC", "densenet": "DenseNet",
          "mobilenet_v": "MobileNet-v"}


def method(name):
    try:
        return get_method(name)
    except ValueError:      # a method this checkout does not know: still shown
        class Unknown:
            label, role, color, marker = name, "baseline", "#555555", "o"
        return Unknown


def _variant(method_name, entry):
    rest = entry[len(method_name) + 1:] if entry.startswith(method_name + "_") else entry
    return VARIANTS.get(rest, rest.replace("_", " "))


def label(method_name, entry, kind=None):
    """The entry's display name in plain text (Markdown): 'xRDA', 'xRDA (channel)', 'RDA ℓ₁ (M=1)',
    or the method's own name for a variant it declares (optim/ `variants`: 'soft threshold, sine
    schedule' for soft_threshold_sine). `kind`: the variant a caller read from the run itself (a
    soft threshold's schedule), used where the entry's name declares none. The one place every
    table and figure takes names from; run names and entries stay as they are."""
    m = method(method_name)
    variants = getattr(m, "variants", {})
    rest = entry[len(method_name) + 1:] if entry.startswith(method_name + "_") else None
    if rest in variants:
        return variants[rest].replace("ℓ1", "ℓ₁")
    base = (variants.get(kind) or m.label or method_name).replace("ℓ1", "ℓ₁")
    return base if entry == method_name else f"{base} ({_variant(method_name, entry)})"


def mpl(text):
    """Plain text for matplotlib: ℓ₁ as mathtext."""
    return text.replace("ℓ₁", r"$\ell_1$").replace("ℓ1", r"$\ell_1$")


def model_name(model, width=1.0):
    """'resnet20', 0.5 -> 'ResNet-20 ×0.5'; an unknown name is kept."""
    out = str(model)
    for key, name in MODELS.items():
        m = re.fullmatch(rf"{key}_?(\d+)", out)
        if m:
            out = f"{name}{'' if name.endswith('v') else '-'}{m.group(1)}"
            break
    try:
        w = float(width)
    except (TypeError, ValueError):
        w = 1.0
    return out if w == 1.0 or w != w else f"{out} ×{w:g}"


def dataset_name(name):
    try:
        from sparsecs import data

        return data.DATASETS[name].label
    except (ImportError, KeyError):
        return str(name)


def row_titles(df):
    """{row: 'ResNet-20 ×0.5, Fashion-MNIST'} from a run table (load.load)."""
    out = {}
    for row, part in df.groupby("row", sort=False):
        r = part.iloc[0]
        out[row] = f"{model_name(r['model'], r['width'])}, {dataset_name(r['dataset'])}"
    return out


class Looks:
    """Colours, markers and lines for every (method, entry) of a report, decided once so that
    an entry looks the same in every figure."""

    def __init__(self, entries, roles=None):
        """entries: (method, entry) pairs in profile order; roles: {entry: its role in the
        profile} (default: the method's role)."""
        entries = list(dict.fromkeys(entries))
        roles = roles or {}
        first = {}
        for meth, entry in entries:
            first.setdefault(meth, entry)
        # xRDA and the baselines choose before the ablations: the main figure's entries get
        # their registry colours; yellow (faint on white) is never handed out here
        role = lambda e: roles.get(e[1], method(e[0]).role)
        chromatic = [c for c in PALETTE if c not in (DENSE_COLOR, YELLOW)]
        color, used = {}, []
        for group in (("reference", "baseline"), None):      # None: the ablations and the rest
            mine = [e for e in entries if (role(e) in group if group else e not in color)]
            for homes in (True, False):
                for meth, entry in mine:
                    if (meth, entry) in color:
                        continue
                    m = method(meth)
                    home = (m.color or "").upper()
                    if m.role == "dense" or role((meth, entry)) == "dense":
                        color[(meth, entry)] = DENSE_COLOR   # a second dense model differs in line
                    elif homes:
                        if first[meth] == entry and home in chromatic and home not in used:
                            color[(meth, entry)] = home
                            used.append(home)
                    else:
                        free = [c for c in chromatic if c not in used]
                        color[(meth, entry)] = free[0] if free else chromatic[len(used) % len(chromatic)]
                        used.append(color[(meth, entry)])
        self.base, self.shown, count = {}, {}, {}
        for meth, entry in entries:
            m = method(meth)
            i = count.get(meth, 0)
            count[meth] = i + 1
            marker = m.marker if m.marker not in (".", None) else "o"
            if i:
                marker = SPARE_MARKERS[(i - 1) % len(SPARE_MARKERS)]
            marker = RESERVED.get(marker, marker)
            self.base[(meth, entry)] = dict(color=color[(meth, entry)], marker=marker, ls=DASHES[i % len(DASHES)])

    def figure(self, entries):
        """{(method, entry): matplotlib keywords} for the entries one figure draws: distinct
        colours (an entry whose colour an earlier entry of the figure has takes a free one)."""
        out, taken = {}, []
        entries = list(dict.fromkeys(entries))
        # the colour an entry was given in an earlier figure first: a schedule the trade-off
        # figure drew in yellow stays yellow in the threshold figures, never xRDA's vermillion
        own = {e: self.shown.get(e) or self.base.get(e) or Looks([e]).base[e] for e in entries}
        wanted = [own[x]["color"] for x in entries]
        for e in entries:
            kw = dict(own[e])
            if kw["color"] in taken:
                # a free colour no other entry of the figure wants; yellow only as the last one
                home = (method(e[0]).color or "").upper()
                free = ([c for c in [home] if c in PALETTE and c not in taken + wanted + [DENSE_COLOR, YELLOW]]
                        + [c for c in PALETTE if c not in taken and c not in wanted and c not in (DENSE_COLOR, YELLOW)]
                        or [c for c in PALETTE if c not in taken and c != DENSE_COLOR]
                        or [c for c in PALETTE if c not in taken])
                if free:
                    kw["color"] = free[0]
            taken.append(kw["color"])
            if e in self.base and kw["color"] != self.base[e]["color"]:
                self.shown.setdefault(e, dict(kw))
            out[e] = dict(kw, mec=kw["color"], mfc=kw["color"])
        return out


def looks(entries):
    """{(method, entry): matplotlib keywords} with distinct styles for every entry."""
    entries = list(entries)
    return Looks(entries).figure(entries)
