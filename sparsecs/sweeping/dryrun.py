"""--dry-run: every run of a profile (done, todo, same, wait) and the cost left to train."""
from sparsecs import config as C
from sparsecs import hardware
from sparsecs import paths

from .plan import is_committed, is_finished, known, never_runs, spec_cfg, weight_users, weights_wanted
from .profile import ProfileError
from .startfrom import start_notes
from .timing import SETTING_KEYS, epoch_seconds, epoch_time


def _searches(specs):
    """The λ searches behind these runs, once each (a run is a search's round or follower)."""
    out = {}
    for s in specs:
        for x in (s.search, s.after):
            if x is not None:
                out[id(x)] = x
    return list(out.values())


def committed_line(reused, retrain):
    """What happens to committed complete runs (results without weights): the default counts
    them as done; --retrain trains them again into the same folders."""
    if retrain:
        return (f"{retrain} committed complete run(s) would be retrained, writing over them (--retrain); "
                f"without --retrain they count as done")
    if reused:
        return (f"{reused} of the finished runs are committed complete runs (no weights here), counted as "
                f"done; --retrain would train them again, writing over them")
    return None


def dry_run(specs, results):
    """List every run (done, todo, same, wait) with its epochs, then what is left to train: its
    run-epochs, and hours where complete runs of the same data, model, width and method in
    RESULTS/runs measured an epoch (metrics.csv): this machine's runs in the same setting
    (precision, channels_last, compile) first, else other machines' (the line names them),
    else runs in another setting (a note says which; timing.epoch_time), plus the most the
    unfinished λ searches can add (their rounds after the one listed)."""
    try:
        ready, waiting = known(specs, results)
        notes = start_notes(specs, results)
    except (C.ConfigError, paths.RunFolderError, ProfileError) as e:
        print(f"  error: {e}")
        return 2
    cost = _DryCost(results)
    done, todo, dup, reused, retrain = _list_ready(ready, results, weight_users(ready + waiting), cost)
    _list_waiting(waiting, cost)
    for line in notes:
        print(f"  {line}")
    gone = sum(1 for s in waiting if never_runs(s))
    print(f"{len(ready) - dup + len(waiting)} runs: {done} finished, {todo} to run, {len(waiting) - gone} waiting "
          f"on a dependency or a λ search" + (f", {gone} never run (their λ search did not reach its target)"
                                               if gone else "")
          + (f" ({dup} entries name a run listed already)" if dup else ""))
    if committed_line(reused, retrain):
        print(committed_line(reused, retrain))
    extra = _search_epochs(ready + waiting)
    fills = _fill_epochs(ready + waiting, results)
    hours = _hours(cost.left, results, cost.device, cost.others, cost.settings)
    if not cost.left["epochs"] and not extra and not fills:
        print("cost: nothing left to train")
        return 0
    print(f"cost: {cost.left['epochs']} run-epochs to train{hours}"
          + (f"; the λ searches' later rounds may add up to {extra} run-epochs" if extra else "")
          + (f"; fill-ins of seeds short of an end level up to {fills}" if fills else "")
          + " (one run at a time: divide by the runs that run at once)")
    return 0


class _DryCost:
    """The dry run's cost left: run-epochs, and seconds at the epoch times measured here or on
    other machines; the machines, and the settings, other runs' times came from."""

    def __init__(self, results):
        self.measured = epoch_seconds(results)
        self.device = hardware.environment()["device_name"]
        self.left = {"epochs": 0, "untimed": 0, "here": 0.0, "other": 0.0}
        self.others, self.settings = set(), {}

    def __call__(self, s, to_run):
        """'N epochs' for the run's line; a run still to train adds to the cost left."""
        cfg = spec_cfg(s)
        ep = int(cfg["epochs"])
        if to_run:
            self.left["epochs"] += ep
            t, how, cells = epoch_time(self.measured, cfg, self.device)
            if t is None:
                self.left["untimed"] += 1
            else:
                mine = all(d == self.device for _, d in cells)
                self.left["here" if mine else "other"] += ep * t
                self.others.update(d for _, d in cells if d != self.device)
                if how == "setting":
                    self.settings[_setting_text(cfg)] = {_setting_text(dict(zip(SETTING_KEYS, c[0])))
                                                         for c in cells}
        return f"{ep} epochs"


def _list_ready(ready, results, users, cost):
    """The done, todo and same lines of the runs whose names are known; returns the counts
    (done, todo, same, committed runs counted as done, committed runs --retrain trains)."""
    done = todo = dup = 0
    seen = set()
    reused = retrain = 0     # committed complete runs (no weights): counted as done, or --retrain
    for s in ready:
        if s.name in seen:
            dup += 1
            print(f"  same  {s.name}  ({s.entry}: the same run as above, run once)")
        elif not (fin := is_finished(s.cfg, results)) or weights_wanted(s, users.get(id(s)), results):
            todo += 1
            why = ("  (complete without its weights, which a run still to train starts from: "
                   "trained again)" if fin else "")
            if not fin and is_committed(s.name, results):
                retrain += 1
                why = "  (committed complete run: --retrain trains it again, writing over it)"
            print(f"  todo  {s.name}  {cost(s, True)}{why}")
        else:
            done += 1
            reused += is_committed(s.name, results)
            print(f"  done  {s.name}  {cost(s, False)}")
        seen.add(s.name)
    return done, todo, dup, reused, retrain


def _list_waiting(waiting, cost):
    """A wait line per run whose name is not known yet, with what it waits on."""
    for s in waiting:
        why = _waits_on(s)
        settled = never_runs(s)
        gone = bool(settled) or (s.after is not None and s.after.done and s.after.failed)
        if settled and not s.after:
            why = settled
        print(f"  wait  {s.label()}  ({why})  {cost(s, not gone)}")


def _waits_on(s):
    if s.after is not None:
        return (f"calibration: {s.after.failed}" if s.after.failed else
                f"calibration {s.after.note}: not run" if s.after.done else f"the λ search of {s.after.label}")
    if s.search is not None and s.search.chain is not None:
        return f"the λ search for the previous target, {s.search.chain.label}"
    what = ", ".join(sorted({d.name or d.label() for d in s.deps}))
    kinds = "/".join(k for k in ("target_from", "init_from")
                     if (s.target_from if k == "target_from" else s.init_from))
    return f"{kinds} {what}"


def _search_epochs(specs):
    """The most run-epochs the unfinished λ searches' rounds after the listed one can add."""
    extra = 0
    for x in _searches(specs):
        if not x.done and x.specs:
            extra += max(0, x.rounds - len(x.history) - 1) * int(spec_cfg(x.specs[0])["epochs"])
    return extra


def _fill_epochs(specs, results):
    """The most run-epochs fill-ins (calibrate.fill) can add: for each follower seed of an end
    target, or fill-in, not yet finished, the fill-ins still allowed after it."""
    extra = 0
    for s in specs:
        x = s.after or s.fill
        if (x is not None and x.fill and x.side and x.status != "not reached"
                and not (s.cfg is not None and is_finished(s.cfg, results))):
            extra += (x.fill - len(s.fill_chain()) + 1) * int(spec_cfg(s)["epochs"])
    return extra


def _setting_text(cfg):
    return ", ".join(f"{k} {cfg.get(k)}" for k in SETTING_KEYS)


def _hours(left, results, device, others, settings):
    """The cost line's hours: at the epoch times this machine measured in the runs' setting;
    what came from other machines' runs, or from runs in another setting, said apart."""
    import torch
    total = left["here"] + left["other"]
    if not total:
        return f"; no epoch time measured for these runs yet (none complete in {results}/runs)"
    kind = "GPU" if torch.cuda.is_available() else "CPU"
    parts = []
    if left["here"]:
        parts.append(f"{left['here'] / 3600:.1f} h at epoch times measured on this {kind} ({device})")
    if left["other"]:
        parts.append(f"{left['other'] / 3600:.1f} h at epoch times of another {kind}: " + ", ".join(sorted(others)))
    out = f"; {total / 3600:.1f} h in all (" + "; ".join(parts) + f"; from {results}/runs)"
    if settings:
        out += ("; note: " + "; ".join(f"runs in {mine} are timed by runs in {' / '.join(sorted(theirs))}"
                                        for mine, theirs in sorted(settings.items()))
                + ", another setting")
    if left["untimed"]:
        out += f" ({left['untimed']} run(s) with no measured epoch time not counted)"
    return out
