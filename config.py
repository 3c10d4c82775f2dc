"""Run configuration: defaults, YAML loading with `inherit:`, KEY=VALUE overrides, validation.

Every key a run understands is in DEFAULTS (or in its method's `defaults` under `optim.`);
anything else is an error that names the nearest known key.
"""
import copy
import difflib
import math
import hashlib
import json
import os

import yaml

DEFAULTS = {
    "dataset": "digits",       # a data.DATASETS name: digits | fashion_mnist | cifar10 | cifar100 | imagenet
    "data_dir": "data",
    "download": True,          # fetch CIFAR into data_dir when it is missing
    "model": "resnet20",
    "width": 1.0,              # channel multiplier (small for CPU runs)
    "epochs": 10,
    "batch_size": 128,
    "eval_batch_size": 500,
    "augment": True,           # training augmentation on/off (the three keys below)
    "crop_padding": "auto",    # random crop of the zero-padded image; auto: the data set's (data.py)
    "flip": "auto",            # random horizontal flip; auto: the data set's (none for digits)
    "erase": 0.0,              # random erasing probability (the authors' C10 ResNet-20 only)
    "train_subset": 0,         # train on the first N training images only (0: all); smoke tests
    "seed": 0,
    "device": "auto",          # auto | cpu | cuda
    "precision": "fp32",       # fp32 | bf16 (autocast)
    "channels_last": False,
    "compile": False,          # torch.compile the forward pass
    "lr_scale": 1.0,           # multiplies the method's step size optim.lr (SGD's lr, xRDA's h)
    "warmup_epochs": 0,        # linear lr warm-up, then the method's schedule (paper B: 5)
    "label_smoothing": 0.0,    # of the training loss (paper B's ImageNet recipe: 0.1)
    "sync_bn": False,          # under DDP: BatchNorm statistics over the global batch
    "workers": 8,              # DataLoader workers (ImageFolder data sets only)
    "init_from": "",           # a run folder or model.pt to start from instead of random init
    "bn_recal": 2000,          # before the final evaluation, BatchNorm statistics recomputed on
                               # this many training images (no augmentation), every method alike;
                               # 0: keep the running statistics of training
    "method": "sgd",
    "optim": {},               # the method's own keys, see optim/<method>.py `defaults`
    "identity": {},            # what the run is, written by sweep.py (IDENTITY); not hashed
}
# What a sweep records about a run (summary.json has the same fields): the report reads these
# and never parses run names. Ad-hoc runs leave them empty.
IDENTITY = {"profile": "", "entry": "", "role": "", "row": "", "swept_key": "", "swept_value": "",
            "calibration_target": float("nan"), "calibration_round": 0,
            "calibration_status": ""}   # "not reached": a follower run at a missed search's closest round
ROLES = ("dense", "reference", "baseline", "ablation")
CHOICES = {"device": ("auto", "cpu", "cuda"), "precision": ("fp32", "bf16")}
POSITIVE = ("width", "epochs", "batch_size", "eval_batch_size", "lr_scale")
NON_NEGATIVE = ("train_subset", "warmup_epochs", "workers", "bn_recal")
# Keys that change where things are read from, not what is computed: kept out of the hash.
NOT_HASHED = ("data_dir", "download", "device", "identity", "workers")


def _check_value(key, value, rule=None):
    """Finite numbers only; then the key's rule, if it has one."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    if rule is not None and not rule[0](value):
        raise ConfigError(f"config key '{key}' must be {rule[1]}, got {value!r}")


class ConfigError(ValueError):
    """A one-line message naming the bad key or value."""


# Physical limits of values no run can use (a width of 1e9 or a padding of 100000 would try
# to allocate terabytes before anything said so); seeds are what numpy accepts.
LIMITS = {"width": (lambda v: v <= 64, "at most 64"),
          "crop_padding": (lambda v: v <= 64, "at most 64 (pixels of padding per side)"),
          "seed": (lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)")}
MAX_YAML_SIZE = 1_000_000   # elements of a config, override or profile after alias expansion


def check_limits(cfg):
    """LIMITS on a resolved config: ConfigError naming the key."""
    for k, (ok, what) in LIMITS.items():
        if k in cfg and not ok(cfg[k]):
            raise ConfigError(f"config key '{k}' must be {what}, got {cfg[k]!r}")


def check_size(value, where, limit=MAX_YAML_SIZE):
    """Refuse a YAML value whose size after alias expansion is huge (an alias bomb: a few
    lines of `&a [*b, *b, ...]` that expand to billions of elements once copied, hashed or
    printed) or that contains itself. Counted with a memo per list or mapping, so the count
    itself costs only the value's size as written."""
    memo, active = {}, set()

    def size(v):
        if isinstance(v, str):
            return 1 + len(v) // 100
        if not isinstance(v, (list, tuple, dict)):
            return 1
        i = id(v)
        if i in memo:
            return memo[i]
        if i in active:
            raise ConfigError(f"{where}: a YAML alias refers to the value that holds it (a "
                              f"recursive value); write the value out")
        active.add(i)
        n = 1 + sum(size(k) + size(x) for k, x in v.items()) if isinstance(v, dict) else \
            1 + sum(size(x) for x in v)
        active.discard(i)
        if n > limit:
            raise ConfigError(f"{where}: a YAML value of more than {limit:,} elements after alias "
                              f"expansion (an alias bomb?); refused")
        memo[i] = n
        return n

    try:
        size(value)
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def flatten(d, prefix=""):
    """{'optim': {'lam': 1}} -> {'optim.lam': 1}: the dotted keys that overrides use."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path, _seen=(), what="config"):
    """Read a YAML file of the repository (a config, or with what="profile" a profile): one
    loader for both, keys given twice refused, one-line ConfigError for anything unreadable.
    `inherit: other.yaml` (relative to the file) is merged underneath, the same way for both:
    mappings key by key (recursively), every other value (a list, a number) replaced."""
    path = os.path.abspath(path)
    if path in _seen:
        raise ConfigError(f"{path}: inherit cycle")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.load(f, Loader=_UniqueKeyLoader)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected a YAML {what})") from None
    except (yaml.YAMLError, TypeError, ValueError, AttributeError) as e:  # PyYAML on odd input too
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())[:160]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    check_size(cfg, path)
    if cfg is None:
        raise ConfigError(f"{path}: empty {what} file" + (" (write at least `method: ...`)"
                                                           if what == "config" else ""))
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    def keys(d):
        for k, v in d.items():
            yield k
            if isinstance(v, dict):
                yield from keys(v)
    bad = [k for k in keys(cfg) if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: config keys must be names, got {bad[0]!r}")
    parent = cfg.pop("inherit", None)
    if parent:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: inherit must name a file, got {parent!r}")
        cfg = _merge(load_yaml(os.path.join(os.path.dirname(path), parent), _seen + (path,), what), cfg)
    return cfg


def parse_overrides(items):
    """['optim.lam=1e-5', 'epochs=2'] -> nested dict; values parsed as YAML scalars."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        node = out
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty part in key {key!r}")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier '{p}=...'")
        node[parts[-1]] = _scalar(value)
        check_size(node[parts[-1]], f"override {key}")
    return out


def _scalar(text):
    try:
        v = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return text
    # YAML 1.1 reads 1e-5 as a string; accept it as a number.
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    return v


def _unknown(key, known, prefix=""):
    key = str(key)
    close = difflib.get_close_matches(key, list(map(str, known)), n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def _check_type(key, value, default):
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"config key '{key}' must be {type(default).__name__}, got {value!r}")
    return float(value) if isinstance(default, float) else value


def resolve(cfg):
    """Fill defaults, check every key and value; returns a new dict (the resolved config)."""
    import data
    import models
    from optim import get_method

    for k in cfg:
        if k not in DEFAULTS:
            raise _unknown(k, DEFAULTS)
    out = _merge(DEFAULTS, {k: v for k, v in cfg.items() if k not in ("optim", "identity")})
    for k in ("dataset", "model", "method"):   # names are looked up below: strings first
        _check_type(k, out[k], DEFAULTS[k])
    if out["dataset"] not in data.DATASETS:
        raise ConfigError(f"unknown dataset '{out['dataset']}'; known: {', '.join(data.names())}")
    spec = data.DATASETS[out["dataset"]]
    auto = {"crop_padding": spec.crop_padding, "flip": spec.flip}
    for k, v in out.items():
        if out[k] == "auto" and k in auto:
            out[k] = auto[k]
        if k not in ("optim", "identity"):
            out[k] = _check_type(k, out[k], auto.get(k, DEFAULTS[k]))
    for k, v in out.items():
        if k not in ("optim", "identity"):
            _check_value(k, v)
    out["identity"] = _identity(cfg.get("identity"))
    for k, allowed in CHOICES.items():
        if out[k] not in allowed:
            raise ConfigError(f"config key '{k}' must be one of {', '.join(allowed)}, got {out[k]!r}")
    for k in POSITIVE:
        if out[k] <= 0:
            raise ConfigError(f"config key '{k}' must be positive, got {out[k]!r}")
    for k in NON_NEGATIVE:
        if out[k] < 0:
            raise ConfigError(f"config key '{k}' must be >= 0, got {out[k]!r}")
    check_limits(out)
    if out["crop_padding"] < 0:
        raise ConfigError(f"config key 'crop_padding' must be >= 0, got {out['crop_padding']!r}")
    if not 0.0 <= out["label_smoothing"] < 1.0:
        raise ConfigError(f"config key 'label_smoothing' must be in [0, 1), got {out['label_smoothing']!r}")
    if out["warmup_epochs"] >= out["epochs"]:
        raise ConfigError(f"config key 'warmup_epochs' ({out['warmup_epochs']}) must be less than "
                          f"epochs ({out['epochs']})")
    if not 0.0 <= out["erase"] <= 1.0:
        raise ConfigError(f"config key 'erase' must be a probability in [0, 1], got {out['erase']!r}")
    if out["model"] not in models.names():
        try:
            models.get_model(out["model"])
        except ValueError as e:
            raise ConfigError(str(e)) from None
    try:
        method = get_method(out["method"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if getattr(method, "needs_init_from", False) and not out["init_from"]:
        raise ConfigError(f"method '{out['method']}' needs init_from: a finished dense run folder or its model.pt")

    optim_cfg = cfg.get("optim") or {}
    if not isinstance(optim_cfg, dict):
        raise ConfigError("config key 'optim' must be a mapping")
    for k in optim_cfg:
        if k not in method.defaults:
            raise _unknown(k, method.defaults, prefix="optim.")
    hp = _merge(method.defaults, optim_cfg)
    for k, v in hp.items():
        hp[k] = _check_type(f"optim.{k}", v, method.defaults[k])
        _check_value(f"optim.{k}", hp[k], method.rules.get(k))
        if k in method.choices and hp[k] not in method.choices[k]:
            raise ConfigError(f"config key 'optim.{k}' must be one of "
                              f"{', '.join(method.choices[k])}, got {hp[k]!r}")
    try:
        method.validate(hp)
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    out["optim"] = hp
    return out


def _identity(ident):
    if ident in (None, {}):
        return dict(IDENTITY)
    if not isinstance(ident, dict):
        raise ConfigError("config key 'identity' must be a mapping")
    for k in ident:
        if k not in IDENTITY:
            raise _unknown(k, IDENTITY, prefix="identity.")
    out = {**IDENTITY, **ident}
    if out["role"] not in ("",) + ROLES:
        raise ConfigError(f"config key 'identity.role' must be one of {', '.join(ROLES)}, got {out['role']!r}")
    out["swept_value"] = "" if out["swept_value"] is None else str(out["swept_value"])
    for k in ("profile", "entry", "row", "swept_key", "calibration_status"):
        out[k] = str(out[k])
    out["calibration_target"] = _identity_number("calibration_target", out["calibration_target"])
    out["calibration_round"] = _identity_number("calibration_round", out["calibration_round"])
    return out


def _identity_number(key, value):
    """identity.calibration_target: NaN (none) or a fraction in [0, 1]; identity.calibration_round:
    a whole number >= 0. Anything else a ConfigError (one line), not a traceback."""
    try:
        bad = isinstance(value, bool)
        x = float(value)
    except (TypeError, ValueError):
        bad = True
    if key == "calibration_round":
        if bad or not math.isfinite(x) or not x.is_integer() or x < 0:
            raise ConfigError(f"config key 'identity.calibration_round' must be a whole number >= 0, "
                              f"got {value!r}")
        return int(x)
    if bad or not (math.isnan(x) or 0 <= x <= 1):
        raise ConfigError(f"config key 'identity.calibration_target' must be a fraction in [0, 1] "
                          f"(or .nan: none), got {value!r}")
    return x


def config_hash(cfg):
    """Hash of the whole resolved config (every key, defaults included, but those that only say
    where things are read from), so a changed default never names an old run as the new one.
    `init_from` enters as the run it names (the run folder's name, which holds that run's own
    hash), not as a path: moving the results folder keeps every name."""
    hashed = {k: v for k, v in cfg.items() if k not in NOT_HASHED}
    hashed["init_from"] = init_key(cfg["init_from"])
    revision = method_revision(cfg["method"], cfg["optim"])
    if revision != 1:   # only then: the hashes of methods never revised stay as they were
        hashed["method_revision"] = revision
    return hashlib.sha1(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()[:8]


def method_revision(name, hp=None):
    """The revision of a run of the method named `name` with `optim` keys `hp` (optim/base.py
    Method.revision_of: the method's `revision`, or a variant's own)."""
    from optim import get_method

    return get_method(name).revision_of(hp or {})


RUN_FOLDER_FILES = ("config.yaml", "summary.json", ".sparse-run")   # runs.CONFIG, SUMMARY, MARKER


def init_key(path):
    """What of an init_from path identifies the weights: a run folder's name (also for its
    model.pt; the name holds that run's own config hash), else the file's content
    ('sha256:...'): two different w.pt in two folders are two runs, and one file moved or
    renamed is the same. A path that is no file (a folder not there yet) keeps its name;
    '' for none."""
    if not path:
        return ""
    path = os.path.normpath(str(path))
    if os.path.basename(path) == "model.pt" and (not os.path.isfile(path) or any(
            os.path.exists(os.path.join(os.path.dirname(path), n)) for n in RUN_FOLDER_FILES)):
        return os.path.basename(os.path.dirname(path))
    if os.path.isfile(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return "sha256:" + h.hexdigest()
    return os.path.basename(path)


def run_name(cfg):
    """Readable name plus hash: cifar10-vgg16-xrda-lam1e-06-s0-1a2b3c4d."""
    from optim import get_method

    o = cfg["optim"]
    parts = [cfg["dataset"], cfg["model"]]
    if cfg["width"] != 1.0:
        parts.append(f"w{cfg['width']:g}")
    parts.append(cfg["method"])
    if o.get("mode", "elementwise") != "elementwise":
        parts.append(o["mode"])
    for key, tag in get_method(cfg["method"]).name_tags:
        if o.get(key):
            parts.append(f"{tag}{o[key]:g}")
    parts.append(f"s{cfg['seed']}")
    parts.append(config_hash(cfg))
    return "-".join(parts)


def build(path=None, overrides=()):
    cfg = load_yaml(path) if path else {}
    return resolve(_merge(cfg, parse_overrides(overrides)))
