"""The scheduler: launch every run whose dependencies are done; the status table; --dry-run."""
import time

from sparsecs import cli
from sparsecs import config as C
from sparsecs import hardware
from sparsecs import paths

from .plan import (SETTING_KEYS, epoch_seconds, epoch_time, is_committed, is_finished, known, materialize,
                   missed, never_runs, next_round, spec_cfg, start_notes, weight_users, weights_wanted)
from .profile import TERMINAL, ProfileError


# ----------------------------------------------------------------------------- scheduling

HELD = 4   # train.py's exit status for a run folder another process holds (README, exit codes)


def holder(results, name):
    """The PID in run `name`'s lock file (the process that holds it), or '?'."""
    try:
        with open(paths.path(paths.run_dir(results, name), paths.LOCK)) as f:
            return f.read(32).strip() or "?"
    except OSError:
        return "?"


def run_all(specs, results, launcher, state=None):
    """Launch every run whose dependencies are done; returns {id(spec): (status, note)}
    (`state`: fill this dict instead, so that a caller still has it after an exception).

    Progress: `[k/N] start RUN` when a run is handed to the launcher and `[k/N] done RUN (took,
    elapsed, ETA)` when it ends (FAILED for a failure), k the run's own start number, N the runs
    to train as known then. ETA: the runs left weighed by their cost (epochs x the epoch time
    runs of their data, model, width and method measured, plan.epoch_time), at the rate of
    seconds per unit of cost the runs ended so far took, / the launcher's `jobs`: the costly
    runs go first, and a mean over them alone overstated the rest several times.

    Ready runs wait in one queue, runs that others depend on first, then in profile order
    (profiles list their expensive runs first); the local launcher takes from it whenever a
    slot is free, the SLURM launcher takes all of it (one job array per wave). A finished
    round of a λ search adds the next round to `specs` (and to the queue's inputs)."""
    state = {} if state is None else state
    claimed, running, queue = {}, {}, []
    # progress: [k/N] start|done lines; N is the runs this sweep expects to train as known now
    # (started, ready and waiting; a search's next round adds one, a skip or block takes one)
    began, took, t_sweep = {}, [], time.time()
    number, ended = {}, []          # each run's start number; the runs ended, in order
    costs = _Costs(results)
    jobs = max(1, int(getattr(launcher, "jobs", 1) or 1))
    order = {id(s): i for i, s in enumerate(specs)}
    pending, born = list(specs), []
    users = weight_users(specs)     # (a search's rounds never start from weights)

    def settle(s, status, note=""):
        state[id(s)] = (status, note)
        if s.search is None or status not in ("finished", "skipped"):
            if s.search is not None:
                s.search.done, s.search.failed = True, f"round {s.name or s.label()} {status}"
            return
        try:
            nxt = next_round(s, results)
        except (OSError, KeyError, ValueError, paths.RunFolderError) as e:
            s.search.done, s.search.failed = True, f"cannot read round {s.name}: {e}"
            nxt = None
        if nxt is not None:
            order[id(nxt)] = order[id(s)]
            specs.insert(specs.index(s) + 1, nxt)
            born.append(nxt)
        elif s.search.failed or s.search.note:
            tail = ("" if s.search.failed else "; its followers do not run" if s.search.follower_value() is None
                    else "; its followers run at the closest round's value, marked 'not reached'")
            print(f"calibration {s.search.label}: {s.search.failed or s.search.note}{tail}", flush=True)

    try:
        while pending or running or queue or born:
            pending, born[:] = pending + born, []
            still, settled = [], len(state)
            for s in pending:
                dep_states = [state.get(id(d), ("",))[0] for d in s.deps]
                bad = [d for d, st in zip(s.deps, dep_states) if st in ("failed", "blocked", "held")]
                failed = [d.search.failed for d in s.deps if d.search is not None and d.search.failed]
                if not bad and s.after is not None and s.after.done and s.after.failed:
                    failed.append(s.after.failed)
                if s.search is not None and s.search.chain is not None and s.search.chain.failed:
                    failed.append(s.search.chain.failed)
                miss = [missed(d) for d in s.deps if missed(d)]
                if s.after is not None and s.after.done and not s.after.failed and s.after.follower_value() is None:
                    miss.append(s.after.note)
                if not bad and not failed and miss:
                    state[id(s)] = ("not run", f"calibration {miss[0]}")
                    continue
                if not bad and failed:
                    state[id(s)] = ("blocked", f"calibration: {failed[0]}")
                    print(f"blocked {s.label()}: {state[id(s)][1]}", flush=True)
                    continue
                if bad:
                    state[id(s)] = ("blocked", f"{bad[0].name or bad[0].label()} {state[id(bad[0])][0]}")
                    print(f"blocked {s.label()}: {state[id(s)][1]}", flush=True)
                    continue
                if (not all(st in ("finished", "skipped") for st in dep_states) or s.waiting_on_search()
                        or s.deps_searching()):
                    still.append(s)
                    continue
                if s.cfg is None:
                    try:
                        materialize(s, results)
                    except (C.ConfigError, OSError, KeyError, ValueError, paths.RunFolderError) as e:
                        settle(s, "failed", f"config: {e}")
                        print(f"FAILED {s.label()}: {e}", flush=True)
                        continue
                other = claimed.get(s.name)
                if other is not None and other is not s:   # the same run twice in a profile
                    if id(other) in state:
                        st = state[id(other)]
                        settle(s, *(("skipped", "") if st[0] in ("finished", "skipped") else st))
                    else:
                        still.append(s)
                    continue
                claimed[s.name] = s
                if is_finished(s.cfg, results) and not weights_wanted(s, users.get(id(s)), results):
                    settle(s, "skipped")
                else:
                    queue.append(s)
            pending = still
            queue.sort(key=lambda s: (not s.dependents and s.search is None, order[id(s)]))
            n = launcher.free(len(running))
            if n and queue:
                total = len(began) + len(queue) + len(pending) + len(born)
                for s in queue[:n]:
                    began[id(s)] = time.time()
                    number[id(s)] = len(began)
                    print(f"[{len(began)}/{total}] start {s.name}", flush=True)
                running.update(launcher.submit(queue[:n]))
                queue = queue[n:]
            if not running:
                if pending and not queue and not born and len(state) == settled:  # a bug
                    for s in pending:
                        state[id(s)] = ("blocked", "dependency never finished")
                    pending = []
                continue
            if born or len(state) != settled:
                # rounds replayed from disk, or runs settled, in this pass: place what they free
                # before waiting (a resumed search needs one pass per round on disk, and a wait
                # here left a free slot idle until the running run ended)
                continue
            for s, code, note in launcher.wait(running):
                for h in [h for h, v in running.items() if v is s]:
                    del running[h]
                took.append(time.time() - began.get(id(s), t_sweep))
                ended.append(s)
                total = len(began) + len(queue) + len(pending) + len(born)
                left = total - len(took)
                rest = list(running.values()) + queue + pending + born
                eta = cli.duration(costs.eta(ended, took, rest) / jobs) if left else "0s"
                times = (f"took {cli.duration(took[-1])}; elapsed {cli.duration(time.time() - t_sweep)}, "
                         f"ETA {eta}")
                status, note = ("finished", "") if code == 0 else ("failed", note)
                if code == HELD:   # another sweep trains it now: not a failure of this one
                    status, note = "held", f"held by another process (PID {holder(results, s.name)}), skipped"
                word = {"finished": "done", "held": "held"}.get(status, "FAILED")
                print(f"[{number.get(id(s), len(took))}/{total}] {word} {s.name} ({times})"
                      + (f": {note}" if note else ""),
                      flush=True)
                settle(s, status, note)
    except BaseException:   # Ctrl-C, a full disk: the running children stop at a checkpoint
        launcher.close(cancel=True, handles=running)
        raise
    launcher.close()
    return state


class _Costs:
    """Each run's cost for the sweep's ETA: its epochs x the seconds an epoch of its data,
    model, width and method took in the complete runs of RESULTS/runs (plan.epoch_time), the
    mean of the known ones where none was measured (epochs alone where none at all)."""

    def __init__(self, results):
        self.measured = epoch_seconds(results)
        self.device = hardware.environment()["device_name"]
        self.known = {}

    def _epochs_time(self, s):
        if id(s) not in self.known:
            try:
                cfg = spec_cfg(s)
                self.known[id(s)] = (int(cfg["epochs"]), epoch_time(self.measured, cfg, self.device)[0])
            except (C.ConfigError, ProfileError, KeyError, ValueError, TypeError, OSError, paths.RunFolderError):
                self.known[id(s)] = (1, None)
        return self.known[id(s)]

    def eta(self, ended, took, rest):
        """Seconds the runs `rest` take, at the rate the runs `ended` took (`took` seconds)."""
        pairs = {id(s): self._epochs_time(s) for s in list(ended) + list(rest)}
        times = [t for _, t in pairs.values() if t]
        mean = sum(times) / len(times) if times else 1.0

        def cost(s):
            epochs, t = pairs[id(s)]
            return epochs * (t or mean)
        done = sum(cost(s) for s in ended)
        return sum(took) / done * sum(cost(s) for s in rest) if done > 0 else 0.0


def print_table(specs, state, seconds=None):
    """The status table (runs a stopped sweep never settled count as `not run`)."""
    counts = {k: 0 for k in TERMINAL}      # TERMINAL holds "not run" already: one row of it
    for s in specs:
        counts[state.get(id(s), ("not run",))[0]] += 1
    print("\n| status   | runs |\n|----------|-----:|")
    for k in TERMINAL:
        print(f"| {k:<8} | {counts[k]:>4} |")
    if seconds is not None:
        print(f"\n{len(specs)} runs in {seconds:.0f}s")
    for kind in ("held", "failed", "blocked"):
        for s in specs:
            st, note = state.get(id(s), ("not run", ""))
            if st == kind:
                print(f"  {kind}: {s.name or s.label()}: {note}")
    return counts


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
    else runs in another setting (a note says which; plan.epoch_time), plus the most the
    unfinished λ searches can add (their rounds after the one listed)."""
    done = todo = dup = 0
    seen = set()
    try:
        ready, waiting = known(specs, results)
        notes = start_notes(specs, results)
    except (C.ConfigError, paths.RunFolderError, ProfileError) as e:
        print(f"  error: {e}")
        return 2
    users = weight_users(ready + waiting)
    measured = epoch_seconds(results)
    device = hardware.environment()["device_name"]
    left = {"epochs": 0, "untimed": 0, "here": 0.0, "other": 0.0}
    others, settings = set(), {}   # the machines, and the settings, other runs' times came from

    def cost(s, to_run):
        cfg = spec_cfg(s)
        ep = int(cfg["epochs"])
        if to_run:
            left["epochs"] += ep
            t, how, cells = epoch_time(measured, cfg, device)
            if t is None:
                left["untimed"] += 1
            else:
                mine = all(d == device for _, d in cells)
                left["here" if mine else "other"] += ep * t
                others.update(d for _, d in cells if d != device)
                if how == "setting":
                    settings[_setting_text(cfg)] = {_setting_text(dict(zip(SETTING_KEYS, c[0]))) for c in cells}
        return f"{ep} epochs"

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
    for s in waiting:
        if s.after is not None:
            why = (f"calibration: {s.after.failed}" if s.after.failed else
                   f"calibration {s.after.note}: not run" if s.after.done else f"the λ search of {s.after.label}")
        elif s.search is not None and s.search.chain is not None:
            why = f"the λ search for the previous target, {s.search.chain.label}"
        else:
            what = ", ".join(sorted({d.name or d.label() for d in s.deps}))
            kinds = "/".join(k for k in ("target_from", "init_from")
                             if (s.target_from if k == "target_from" else s.init_from))
            why = f"{kinds} {what}"
        settled = never_runs(s)
        gone = bool(settled) or (s.after is not None and s.after.done and s.after.failed)
        if settled and not s.after:
            why = settled
        print(f"  wait  {s.label()}  ({why})  {cost(s, not gone)}")
    for line in notes:
        print(f"  {line}")
    gone = sum(1 for s in waiting if never_runs(s))
    print(f"{len(ready) - dup + len(waiting)} runs: {done} finished, {todo} to run, {len(waiting) - gone} waiting "
          f"on a dependency or a λ search" + (f", {gone} never run (their λ search did not reach its target)"
                                               if gone else "")
          + (f" ({dup} entries name a run listed already)" if dup else ""))
    if committed_line(reused, retrain):
        print(committed_line(reused, retrain))
    extra = 0
    for x in _searches(ready + waiting):
        if not x.done and x.specs:
            extra += max(0, x.rounds - len(x.history) - 1) * int(spec_cfg(x.specs[0])["epochs"])
    hours = _hours(left, results, device, others, settings)
    if not left["epochs"] and not extra:
        print("cost: nothing left to train")
        return 0
    print(f"cost: {left['epochs']} run-epochs to train{hours}"
          + (f"; the λ searches' later rounds may add up to {extra} run-epochs" if extra else "")
          + " (one run at a time: divide by the runs that run at once)")
    return 0


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
