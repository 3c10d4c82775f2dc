"""The seconds an epoch took in the complete runs on disk, by training setting and machine,
and the estimate for a run still to train (--dry-run's cost, the status table's time left)."""
import os

from sparsecs import paths
from sparsecs import summaries


# the config keys of a training setting: the same data, model and method run at other speeds
SETTING_KEYS = ("precision", "channels_last", "compile")


def setting(cfg):
    """A run's training setting (SETTING_KEYS), None for a key it does not hold."""
    return tuple(cfg.get(k) for k in SETTING_KEYS)


def _run_setting(folder, summary):
    """The setting a run trained in: its config.yaml, else what its summary holds."""
    import yaml
    try:
        with open(paths.path(folder, paths.CONFIG)) as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        cfg = None
    return setting(cfg if isinstance(cfg, dict) else summary)


def epoch_seconds(results):
    """{(dataset, model, width, method): {(setting, device_name): (seconds, epochs)}}: the
    seconds (metrics.csv `seconds`: training and the epoch's evaluation) and epochs of the
    complete runs in RESULTS/runs, by training setting (setting()) and the machine that trained
    them (summary `device_name`); for --dry-run's cost estimate (epoch_time). Unreadable folders
    are passed over."""
    root = os.path.join(results, "runs")
    out = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        folder = os.path.join(root, name)
        try:
            s = summaries.complete_summary(folder)
            secs = [float(r["seconds"]) for r in summaries.read_metrics(folder)] if s else []
        except (OSError, ValueError, KeyError, paths.RunFolderError):
            continue
        if secs:
            key = (s["dataset"], s["model"], float(s["width"]), s["method"])
            sub = out.setdefault(key, {})
            where = (_run_setting(folder, s), str(s.get("device_name") or "unknown"))
            total, n = sub.get(where, (0.0, 0))
            sub[where] = (total + sum(secs), n + len(secs))
    return out


def time_key(cfg):
    return (cfg["dataset"], cfg["model"], float(cfg["width"]), cfg["method"])


def epoch_time(measured, cfg, device):
    """(seconds an epoch, how, cells) for a run to train on `device` (this machine's
    device_name): the mean over complete runs of its data, model, width and method in its
    setting on this machine (how "here"); else in its setting on other machines ("other");
    else in another setting, this machine's runs first ("setting"); (None, "", ()) when none
    ran. cells: the (setting, device_name) pairs the mean is over."""
    by = measured.get(time_key(cfg)) or {}
    mine = setting(cfg)

    def mean(cells):
        return sum(by[c][0] for c in cells) / sum(by[c][1] for c in cells)
    for how, cells in (("here", [c for c in by if c == (mine, device)]),
                       ("other", [c for c in by if c[0] == mine]),
                       ("setting", [c for c in by if c[1] == device] or list(by))):
        if cells:
            return mean(cells), how, tuple(sorted(cells, key=repr))
    return None, "", ()
