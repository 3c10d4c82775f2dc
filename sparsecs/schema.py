"""Every config key, declared once: its type, default, range or choices, help and role.

config.resolve checks values only through `check` below; `train.py --help-config`, the
README's key tables (scripts/readme_tables.py) and the run-name tags are generated from these
declarations. A top-level key's default is here; an `optim.*` key's default is its method's
(`defaults` in optim/<method>.py: the same key has different defaults in different methods),
and its type, range, help and role are in OPTIM below, or, for a key only a new method has,
in that method's own `keys` (a dict of Key arguments), so that a method stays one file.

Roles: "epochs" (an epoch number a profile's epochs_scale scales), "target" (the key a target
sparsity goes into, target_from); `tag` (prefix, omitted-at): the key's value appears in the
run's name as <prefix><value>, unless it equals omitted-at (0 for penalties: none).
Defaults are hashed with the resolved config: changing one, or its type (1 vs 1.0), renames
every run that uses it.
"""
import difflib
import math
import copy
from dataclasses import dataclass, replace

from sparsecs import summaries
from sparsecs.optim import METHODS
from sparsecs.optim.rigl import DISTRIBUTIONS
from sparsecs.optim.schedules import KINDS
from sparsecs.optim.soft_threshold import THRESHOLD_SCHEDULES
from sparsecs.optim.xrda import MODES


class ConfigError(ValueError):
    """A one-line message naming the bad key or value."""


# type name -> (what the message says it must be, the Python types it accepts)
TYPES = {"bool": "bool", "int": "int", "float": "float", "str": "str", "ints": "a list of int",
         "text": "text", "dict": "a mapping"}


@dataclass(frozen=True)
class Key:
    name: str
    type: str                 # a TYPES name
    default: object = None    # top-level keys only (optim keys: the method's `defaults`)
    help: str = ""
    range: str = ""           # "> 0", ">= 0", "[0, 1)", ...: numbers (each element of "ints")
    choices: tuple = ()       # allowed values of a string key
    auto: bool = False        # "auto" allowed: the data set's value (data.py)
    nan: bool = False         # NaN allowed (meaning: none)
    increasing: bool = False  # "ints": strictly increasing
    role: str = ""            # "", "epochs" or "target"
    tag: tuple = ()           # (prefix, omitted-at): a run-name part
    hashed: bool = True       # False: says where things are read from, not what is computed


def _bounds(text):
    """'[0, 1)' -> (0.0, 1.0, True, False); '> 0' -> (0.0, inf, False, False)."""
    def num(s):
        base, _, exp = s.strip().partition("**")
        return float(base) ** float(exp) if exp else float(base)
    if text[0] in "[(":
        lo, hi = text[1:-1].split(",")
        return num(lo), num(hi), text[0] == "[", text[-1] == "]"
    op, value = text.split()
    v = num(value)
    return {">": (v, math.inf, False, False), ">=": (v, math.inf, True, False),
            "<": (-math.inf, v, False, False), "<=": (-math.inf, v, False, True)}[op]


def in_range(value, text):
    lo, hi, lo_in, hi_in = _bounds(text)
    return (lo < value or lo_in and lo == value) and (value < hi or hi_in and value == hi)


def range_words(text):
    return text if text[0] in "<>" else f"in {text}"


# ------------------------------------------------------------------------------ top-level keys

CONFIG = (
    Key("dataset", "str", "digits", "a data.DATASETS name: `digits`, `fashion_mnist`, `cifar10`, "
        "`cifar100`, `imagenet` (an ImageFolder tree)"),
    Key("data_dir", "str", "data", "where CIFAR lives or is downloaded to; ImageNet: "
        "`data_dir/imagenet/{train,val}` or `data_dir/{train,val}`", hashed=False),
    Key("download", "bool", True, "download CIFAR when missing", hashed=False),
    Key("model", "str", "resnet20", "`vgg11/13/16/19`, `resnet20/32/44/56/110`, `resnet18`, "
        "`densenet40`, `densenet_bc100`; ImageNet: `resnet50` (torchvision's), `mobilenet_v1`, and "
        "`resnet50_str`, `mobilenet_v1_str` (the same, initialized as STR / LATS do, bias-free "
        "classifier)"),
    Key("width", "float", 1.0, "channel multiplier (small values for CPU runs)", "(0, 64]",
        tag=("w", 1.0)),
    Key("epochs", "int", 10, "epochs to train", "> 0"),
    Key("batch_size", "int", 128, "training batch (global, under torchrun)", "> 0"),
    Key("eval_batch_size", "int", 500, "evaluation batch", "> 0"),
    Key("augment", "bool", True, "training augmentation on/off (the next three keys), batched on "
        "the device"),
    Key("crop_padding", "int", "auto", "random crop of the zero-padded image, pixels per side: CIFAR "
        "4, Fashion-MNIST 2, digits 2 (a 4-px shift of an upsampled 8×8 digit moves it a whole "
        "original pixel)", "[0, 64]", auto=True),
    Key("flip", "bool", "auto", "random horizontal flip: CIFAR and Fashion-MNIST yes, digits no (a "
        "mirrored 2, 3 or 7 is another glyph or none)", auto=True),
    Key("erase", "float", 0.0, "random erasing probability (torchvision's `RandomErasing(p, "
        "scale=(0, 0.4), ratio=(0.3, 3.3))` after normalization); only the authors' C10 ResNet-20 "
        "script uses it (`configs/paper/c10-resnet20-xrda.yaml`: 0.5)", "[0, 1]"),
    Key("train_subset", "int", 0, "train on the first N images only (0: all); for smoke tests", ">= 0"),
    Key("seed", "int", 0, "seeds model init, batch order and augmentation", "[0, 2**32)"),
    Key("device", "str", "auto", "where to train", choices=("auto", "cpu", "cuda"), hashed=False),
    Key("precision", "str", "fp32", "`bf16`: autocast", choices=("fp32", "bf16")),
    Key("channels_last", "bool", False, "memory format of activations and weights"),
    Key("compile", "bool", False, "`torch.compile` of the forward pass"),
    Key("lr_scale", "float", 1.0, "multiplies the method's step size `optim.lr` (SGD's learning "
        "rate, xRDA's h): a row-level knob for a net that needs a smaller step at its width", "> 0"),
    Key("warmup_epochs", "int", 0, "linear learning-rate warm-up over these epochs (fewer than "
        "`epochs`), then the method's schedule (the cosine runs over the rest); every method, the "
        "soft threshold's cumulative-lr rule included", ">= 0"),
    Key("label_smoothing", "float", 0.0, "of the training loss (paper B's ImageNet recipe: 0.1); the "
        "test loss stays plain cross-entropy", "[0, 1)"),
    Key("sync_bn", "bool", False, "under torchrun: BatchNorm statistics over the global batch (then "
        "the result does not depend on the number of processes); default per process, as in "
        "paper B's recipe"),
    Key("workers", "int", 8, "DataLoader workers per process (ImageFolder data only)", ">= 0",
        hashed=False),
    Key("init_from", "str", "", "start from a finished run's `model.pt` (or its folder) instead of "
        "random init; hashed as the run it names"),
    Key("bn_recal", "int", 2000, "before the final evaluation, BatchNorm statistics recomputed on "
        "this many training images (fixed order, no augmentation), every method alike; `0`: keep "
        "training's running statistics", ">= 0"),
    Key("method", "str", "sgd", "a name from the method registry (`optim/__init__.py`)"),
    Key("optim", "dict", {}, "the method's own keys: the `optim.*` table below"),
    Key("identity", "dict", {}, "what the run is, written by sweep.py: the `identity.*` table "
        "below", hashed=False),
)

# What a sweep records about a run (summary.json has the same fields): the report reads these
# and never parses run names. Ad-hoc runs leave them empty.
ROLES = ("dense", "reference", "baseline", "ablation")
IDENTITY = (
    Key("profile", "text", "", "profile that asked for the run"),
    Key("entry", "text", "", "profile entry"),
    Key("role", "str", "", "what the method is in a comparison ('' for ad-hoc runs)",
        choices=("",) + ROLES),
    Key("row", "text", "", "the comparison it belongs to (a paper row, or dataset-model-width)"),
    Key("swept_key", "text", "", "the key its entry sweeps ('' if none)"),
    Key("swept_value", "text", "", "its value here"),
    Key("calibration_target", "float", float("nan"), "target of a λ search (NaN: none)", "[0, 1]",
        nan=True),
    Key("calibration_round", "int", 0, "round of that search (0 if none)", ">= 0"),
    Key("calibration_status", "text", "", "'not reached': a follower run at a missed search's "
        "closest round; 'fill-in': a follower seed's own run past an end level it stopped short of"),
)

# ------------------------------------------------------------------ the methods' optim.* keys
# Ordered: the run-name tags appear in this order (mode, lam, target, final_threshold, ...).

OPTIM = {k.name: k for k in (
    Key("lr", "float", help="step size: SGD's learning rate, xRDA's h", range="> 0"),
    Key("momentum", "float", help="SGD momentum", range="[0, 1)"),
    Key("nesterov", "bool", help="Nesterov momentum (needs momentum > 0)"),
    Key("weight_decay", "float", help="decay of every tensor, BatchNorm and biases included",
        range=">= 0"),
    Key("schedule", "str", help="step-size schedule (optim/schedules.py)", choices=KINDS),
    Key("milestones", "ints", help="schedule step: epochs (0-indexed) from which the step size is "
        "multiplied by gamma", range="> 0", increasing=True, role="epochs"),
    Key("gamma", "float", help="schedule step: factor at each milestone", range="(0, 1]"),
    Key("mode", "str", help="what is sparse: single weights, whole kernels or whole filters",
        choices=MODES, tag=("", "elementwise")),
    Key("lam", "float", help="penalty λ of the ℓ1 term (soft_threshold: LATS's λ)", range=">= 0",
        tag=("lam", 0)),
    Key("target", "float", help="target sparsity (a fraction of the pruned weights or filters)",
        range="[0, 1)", role="target", tag=("t", 0)),
    Key("final_threshold", "float", help="soft threshold reached at the last step, D (instead of "
        "lam)", range=">= 0", tag=("D", 0)),
    Key("s_weight_decay", "float", help="STR: weight decay of the threshold parameters s",
        range=">= 0", tag=("swd", 0)),
    Key("max_factor", "float", help="xRDA: reweighting bound M (1: plain ℓ1)", range=">= 1"),
    Key("avg", "float", help="xRDA: averaging weight a (constant and step schedules; cosine sets "
        "it)", range="[0, 1]"),
    Key("momentum_ts", "float", help="xRDA: momentum time scale", range="> 0"),
    Key("magnitude_ts", "float", help="xRDA: time scale of the magnitude average that reweights",
        range="> 0"),
    Key("fused", "bool", help="xRDA: the step as one torch.compile'd function"),
    Key("threshold_schedule", "str", help="soft threshold: how d grows (lats: λ·lr a step)",
        choices=THRESHOLD_SCHEDULES),
    Key("s_init", "float", help="STR: initial threshold parameter s"),
    Key("scope", "str", help="GMP: prune over all layers at once or each layer alike",
        choices=("global", "layer")),
    Key("prune_start", "int", help="GMP: first pruning epoch (0-indexed; negative: from the end)",
        role="epochs"),
    Key("prune_end", "int", help="GMP: last pruning epoch (0-indexed; negative: from the end)",
        role="epochs"),
    Key("delta_t", "int", help="RigL: steps between mask updates", range=">= 1"),
    Key("alpha", "float", help="RigL: initial fraction of weights moved at an update", range="(0, 1]"),
    Key("end_fraction", "float", help="RigL: fraction of the steps after which masks stay",
        range="(0, 1]"),
    Key("distribution", "str", help="RigL: layer densities (erk or uniform)", choices=DISTRIBUTIONS),
)}


def method_keys(method):
    """{name: Key} of a method's optim.* keys, each with the method's default; a method's own
    `keys` declare those it alone has. A key declared nowhere is the method's bug: refused."""
    own = {k: Key(k, **spec) for k, spec in getattr(method, "keys", {}).items()}
    out = {}
    for name, default in method.defaults.items():
        spec = own.get(name) or OPTIM.get(name)
        if spec is None:
            raise ConfigError(f"method '{method.name}': optim.{name} is declared nowhere (add it to "
                              f"schema.OPTIM or the method's `keys`)")
        out[name] = replace(spec, default=default)
    return out


def keys_with(method, role):
    return tuple(k for k, spec in method_keys(method).items() if spec.role == role)


def target_key(method):
    """The optim.* key a target sparsity goes into (target_from), or None."""
    hits = keys_with(method, "target")
    return hits[0] if hits else None


# -------------------------------------------------------------------------------- checking

def unknown(key, known, prefix=""):
    close = difflib.get_close_matches(str(key), list(map(str, known)), n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def check(spec, value, where):
    """The value of key `where` (e.g. 'optim.lr') as the run keeps it, or a one-line ConfigError:
    type (ints to floats where a float is declared), finite, range, choices, order."""
    def bad(what):
        return ConfigError(f"config key '{where}' must be {what}, got {value!r}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    t = spec.type
    if t == "text":
        return "" if value is None else str(value)
    ok = {"bool": isinstance(value, bool), "int": isinstance(value, int) and number,
          "float": number, "str": isinstance(value, str), "dict": isinstance(value, dict),
          "ints": isinstance(value, (list, tuple)) and all(
              isinstance(v, int) and not isinstance(v, bool) for v in value)}[t]
    if not ok:
        raise bad(TYPES[t])
    if t == "float":
        try:
            value = float(value)
        except OverflowError:   # an int past float's range
            value = math.inf
        if not math.isfinite(value) and not (spec.nan and math.isnan(value)):
            raise ConfigError(f"config key '{where}' must be a finite number, got {value!r}")
    if spec.range and t == "ints":
        if not all(in_range(v, spec.range) for v in value) or (
                spec.increasing and list(value) != sorted(set(value))):
            raise bad(f"strictly increasing, each {range_words(spec.range)}"
                      if spec.increasing else f"each {range_words(spec.range)}")
    elif spec.range and not (spec.nan and math.isnan(value)) and not in_range(value, spec.range):
        raise bad(range_words(spec.range))
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"config key '{where}' must be one of {', '.join(spec.choices)}, "
                          f"got {value!r}")
    return value


def check_optim(method, given):
    """The method's resolved optim.* keys: defaults under `given`, every value checked."""
    specs = method_keys(method)
    for k in given:
        if k not in specs:
            raise unknown(k, specs, prefix="optim.")
    return {k: check(spec, given[k] if k in given else copy.deepcopy(spec.default), f"optim.{k}")
            for k, spec in specs.items()}


def check_identity(given):
    specs = {k.name: k for k in IDENTITY}
    for k in given:
        if k not in specs:
            raise unknown(k, specs, prefix="identity.")
    return {k: check(spec, given.get(k, spec.default), f"identity.{k}") for k, spec in specs.items()}


DEFAULTS = {k.name: k.default for k in CONFIG}
NOT_HASHED = tuple(k.name for k in CONFIG if not k.hashed)


def name_tags(values, keys):
    """The run-name parts of the `tag`ged keys among `keys`, in their order: <prefix><value>
    where the value is not the key's omitted-at value."""
    parts = []
    for spec in keys:
        if not spec.tag or values.get(spec.name) is None or values[spec.name] == spec.tag[1]:
            continue
        v = values[spec.name]
        parts.append(f"{spec.tag[0]}{v:g}" if isinstance(v, (int, float)) else f"{spec.tag[0]}{v}")
    return parts


def tag_order(method):
    """A method's keys in run-name order: those of OPTIM in its order, then its own."""
    mine = method_keys(method)
    return [mine[k] for k in OPTIM if k in mine] + [s for k, s in mine.items() if k not in OPTIM]


# ----------------------------------------------------------------- help and the README tables

def _text(v):
    """A value as YAML writes it: true, false, '' (empty), 0.1, [], cosine."""
    return "true" if v is True else "false" if v is False else "''" if v == "" else str(v)


def _cell(v):
    return f"`{_text(v)}`"


def _allowed(spec):
    if spec.choices:
        words = [", ".join(f"`{c}`" for c in spec.choices if c)]
    elif spec.range:
        words = [f"strictly increasing, each {range_words(spec.range)}" if spec.increasing
                 else range_words(spec.range)]
    else:
        words = []
    words += ["`auto`"] * spec.auto + ["NaN"] * spec.nan
    return ", or ".join(words)


def _optim_defaults(name):
    """'`0.1` (sgd, gmp, ...); `1.0` (xrda, ...)': the methods having key `name`, by default."""
    by = {}
    for m in METHODS.values():
        if name in m.defaults:
            by.setdefault(_text(m.defaults[name]), []).append(m.name)
    return "; ".join(f"`{v}` ({', '.join(ms)})" for v, ms in by.items())


def tables():
    """Markdown: the top-level keys, the identity keys and every method's optim keys."""
    head = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n"
    top = head + "".join(f"| `{k.name}` | {k.type} | {_cell(k.default)} | {_allowed(k)} | {k.help} |\n"
                         for k in CONFIG)
    ident = head + "".join(f"| `identity.{k.name}` | {k.type} | {_cell(k.default)} | {_allowed(k)} "
                           f"| {k.help} |\n" for k in IDENTITY)
    used = [k for k in OPTIM.values() if any(k.name in m.defaults for m in METHODS.values())]
    optim = "| key | type | allowed | role | defaults (methods) | meaning |\n|---|---|---|---|---|---|\n" + \
        "".join(f"| `optim.{k.name}` | {k.type} | {_allowed(k)} | {_role(k)} | "
                f"{_optim_defaults(k.name)} | {k.help} |\n" for k in used)
    return top, ident, optim


def _role(spec):
    words = [{"epochs": "epochs", "target": "target"}.get(spec.role, "")]
    if spec.tag:
        words.append(f"name tag `{spec.tag[0]}…`" if spec.tag[0] else "name tag")
    return ", ".join(w for w in words if w)


def summary_table():
    """Markdown: every summary.json field (summaries.SUMMARY_FIELDS) with its checked type."""
    kinds = {"str": "text", "int": "whole number", "num": "number", "frac": "fraction",
             "pct": "percent", "sha": "sha256"}
    return "| field | type | meaning |\n|---|---|---|\n" + "".join(
        f"| `{k}` | {kinds.get(summaries.FIELD_TYPES.get(k), 'not checked')}"
        f"{' (optional)' if k in summaries.OPTIONAL else ''} | {v.replace('|', '/')} |\n"
        for k, v in summaries.SUMMARY_FIELDS.items())


def help_text():
    """`train.py --help-config`: every key, plain text."""
    lines = ["Config keys (YAML or KEY=VALUE; dotted keys reach into optim and identity):", ""]
    for prefix, keys in (("", CONFIG), ("identity.", IDENTITY)):
        for k in keys:
            allowed = _allowed(k).replace("`", "")
            lines.append(f"  {prefix}{k.name} ({k.type}, default {_text(k.default)}"
                         f"{'; ' + allowed if allowed else ''}): {k.help.replace('`', '')}")
    lines += ["", "Method keys (optim.*; default per method):", ""]
    for k in OPTIM.values():
        allowed = _allowed(k).replace("`", "")
        role = _role(k).replace("`", "")
        lines.append(f"  optim.{k.name} ({k.type}{'; ' + allowed if allowed else ''}"
                     f"{'; ' + role if role else ''}): {k.help}")
        lines.append(f"      defaults: {_optim_defaults(k.name).replace('`', '')}")
    return "\n".join(lines)
