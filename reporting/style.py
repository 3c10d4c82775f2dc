"""How an entry looks: its method's label, colour and marker come from the method registry
(optim/), so a new method needs no change here; several entries of one method in a row
(xRDA elementwise, channel, step schedule, from a dense model) differ in line and fill."""
from optim import get_method

DASHES = ("-", "--", ":", "-.")


def method(name):
    try:
        return get_method(name)
    except ValueError:      # a method this checkout does not know: still shown
        class Unknown:
            label, role, color, marker = name, "baseline", "#555555", "o"
        return Unknown


def label(method_name, entry):
    m = method(method_name)
    base = m.label or method_name
    return base if entry == method_name else f"{base} [{entry}]"


def looks(entries):
    """{(method, entry): matplotlib keywords} with distinct styles for every entry."""
    out, seen = {}, {}
    for meth, entry in entries:
        if (meth, entry) in out:
            continue
        i = seen.get(meth, 0)
        seen[meth] = i + 1
        m = method(meth)
        out[(meth, entry)] = dict(color=m.color, marker=m.marker if m.marker != "." else "o",
                                  ls=DASHES[i % len(DASHES)], mfc=m.color if i % 2 == 0 else "white",
                                  mec=m.color)
    return out
