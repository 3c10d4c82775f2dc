"""Run configuration: defaults, YAML loading with `inherit:`, KEY=VALUE overrides, validation.

Every key a run understands is declared in schema.py (with its method's `defaults` under
`optim.`); anything else is an error that names the nearest known key.
"""
import copy
import hashlib
import json
import os

import yaml

from sparsecs.schema import ConfigError, DEFAULTS, NOT_HASHED, ROLES   # noqa: F401 (the config API)
from sparsecs import schema

IDENTITY = {k.name: k.default for k in schema.IDENTITY}
MAX_YAML_SIZE = 1_000_000   # elements of a config, override or profile after alias expansion


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


def resolve(cfg):
    """Fill defaults, check every key and value (schema.py); returns a new dict (the resolved
    config)."""
    from sparsecs import data
    from sparsecs import models
    from sparsecs.optim import get_method

    for k in cfg:
        if k not in DEFAULTS:
            raise schema.unknown(k, DEFAULTS)
    specs = {k.name: k for k in schema.CONFIG}
    out = _merge(DEFAULTS, {k: v for k, v in cfg.items() if k not in ("optim", "identity")})
    out["dataset"] = schema.check(specs["dataset"], out["dataset"], "dataset")  # looked up first
    if out["dataset"] not in data.DATASETS:
        raise ConfigError(f"unknown dataset '{out['dataset']}'; known: {', '.join(data.names())}")
    spec = data.DATASETS[out["dataset"]]
    auto = {"crop_padding": spec.crop_padding, "flip": spec.flip}
    for k in out:
        if k in ("optim", "identity"):
            continue
        if specs[k].auto and out[k] == "auto":
            out[k] = auto[k]
        out[k] = schema.check(specs[k], out[k], k)
    if out["warmup_epochs"] >= out["epochs"]:
        raise ConfigError(f"config key 'warmup_epochs' ({out['warmup_epochs']}) must be less than "
                          f"epochs ({out['epochs']})")
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
    for part in ("optim", "identity"):
        if not isinstance(cfg.get(part) or {}, dict):
            raise ConfigError(f"config key '{part}' must be a mapping")
    out["identity"] = schema.check_identity(cfg.get("identity") or {})
    hp = schema.check_optim(method, cfg.get("optim") or {})
    try:   # what no single key says: relations between a method's keys
        method.validate(hp)
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    out["optim"] = hp
    return out


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
    from sparsecs.optim import get_method

    return get_method(name).revision_of(hp or {})


RUN_FOLDER_FILES = ("config.yaml", "summary.json", ".sparse-run")   # paths.CONFIG, SUMMARY, MARKER


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
    """Readable name plus hash: cifar10-vgg16-xrda-lam1e-06-s0-1a2b3c4d (the tags: schema.py)."""
    from sparsecs.optim import get_method

    method = get_method(cfg["method"])
    parts = [cfg["dataset"], cfg["model"], *schema.name_tags(cfg, schema.CONFIG), cfg["method"],
             *schema.name_tags(cfg["optim"], schema.tag_order(method)), f"s{cfg['seed']}",
             config_hash(cfg)]
    return "-".join(parts)


def build(path=None, overrides=()):
    cfg = load_yaml(path) if path else {}
    return resolve(_merge(cfg, parse_overrides(overrides)))
