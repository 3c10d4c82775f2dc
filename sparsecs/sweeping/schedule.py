"""The scheduler: launch every run whose dependencies are done; the status table (--dry-run:
dryrun.py)."""
import time

from sparsecs import cli
from sparsecs import config as C
from sparsecs import hardware
from sparsecs import paths
from sparsecs import summaries

from .plan import (fill_in, is_finished, materialize, missed, next_round, spec_cfg, weight_users,
                   weights_wanted)
from .profile import TERMINAL, ProfileError
from .timing import epoch_seconds, epoch_time


# ----------------------------------------------------------------------------- scheduling

HELD = 4   # train.py's exit status for a run folder another process holds (README, exit codes)


def holder(results, name):
    """The PID in run `name`'s lock file (the process that holds it), or '?'."""
    try:
        with open(paths.path(paths.run_dir(results, name), paths.LOCK)) as f:
            return f.read(32).strip() or "?"
    except OSError:
        return "?"


def run_all(specs, results, launcher, state=None, until=None):
    """Launch every run whose dependencies are done; returns {id(spec): (status, note)}
    (`state`: fill this dict instead, so that a caller still has it after an exception).

    Progress: `[k/N] start RUN` when a run is handed to the launcher and `[k/N] done RUN (took,
    elapsed, ETA)` when it ends (FAILED for a failure), k the run's own start number, N the runs
    to train as known then. ETA: the runs left weighed by their cost (epochs x the epoch time
    runs of their data, model, width and method measured, timing.epoch_time), at the rate of
    seconds per unit of cost the runs ended so far took, / the launcher's `jobs`: the costly
    runs go first, and a mean over them alone overstated the rest several times.

    Ready runs wait in one queue, runs that others depend on first, then in profile order
    (profiles list their expensive runs first); the local launcher takes from it whenever a
    slot is free, the SLURM launcher takes all of it (one job array per wave). A finished
    round of a λ search adds the next round to `specs` (and to the queue's inputs).

    `until` (seconds since the epoch, sweep.py --until): a queued run starts only if its
    estimate (_Costs.left) ends before it, the first in queue order that does; once none
    running and none queued fits, the sweep stops, the rest `not run`. So a sweep that must end
    by a set time (a machine lent for hours) leaves no run cut mid-way."""
    return _Scheduler(specs, results, launcher, {} if state is None else state, until).run()


class _Scheduler:
    """run_all's state: the runs pending, queued and running, and the progress counters."""

    def __init__(self, specs, results, launcher, state, until=None):
        self.specs, self.results, self.launcher, self.state = specs, results, launcher, state
        self.until = until
        self.claimed, self.running, self.queue = {}, {}, []
        # progress: [k/N] start|done lines; N is the runs this sweep expects to train as known now
        # (started, ready and waiting; a search's next round adds one, a skip or block takes one)
        self.began, self.took, self.t_sweep = {}, [], time.time()
        self.number, self.ended = {}, []          # each run's start number; the runs ended, in order
        self.costs = _Costs(results)
        self.jobs = max(1, int(getattr(launcher, "jobs", 1) or 1))
        self.order = {id(s): i for i, s in enumerate(specs)}
        self.pending, self.born = list(specs), []
        self.users = weight_users(specs)     # (a search's rounds never start from weights)

    def run(self):
        try:
            while self.pending or self.running or self.queue or self.born:
                settled = len(self.state)
                self.settle_all()
                self.start()
                if not self.running and self.queue and self.until is not None and not self.born:
                    self.stop_at_until()   # none fits before --until: stop here
                    break
                if not self.running:
                    if self.pending and not self.queue and not self.born and len(self.state) == settled:  # a bug
                        for s in self.pending:
                            self.state[id(s)] = ("blocked", "dependency never finished")
                        self.pending = []
                    continue
                if self.born or len(self.state) != settled:
                    # rounds replayed from disk, or runs settled, in this pass: place what they free
                    # before waiting (a resumed search needs one pass per round on disk, and a wait
                    # here left a free slot idle until the running run ended)
                    continue
                for s, code, note in self.launcher.wait(self.running):
                    self.end(s, code, note)
        except BaseException:   # Ctrl-C, a full disk: the running children stop at a checkpoint
            self.launcher.close(cancel=True, handles=self.running)
            raise
        self.launcher.close()
        return self.state

    def settle(self, s, status, note=""):
        """Record a run's end; a finished round of a λ search adds the next round, a finished
        follower seed (or fill-in) its next fill-in run (plan.fill_in)."""
        self.state[id(s)] = (status, note)
        if (s.after is not None or s.fill is not None) and status in ("finished", "skipped"):
            try:
                self.add(s, fill_in(s, self.results))
            except (OSError, KeyError, ValueError, paths.RunFolderError) as e:
                print(f"no fill-in after {s.name}: cannot read it: {e}", flush=True)
            return
        if s.search is None or status not in ("finished", "skipped"):
            if s.search is not None:
                s.search.done, s.search.failed = True, f"round {s.name or s.label()} {status}"
            return
        try:
            nxt = next_round(s, self.results)
        except (OSError, KeyError, ValueError, paths.RunFolderError) as e:
            s.search.done, s.search.failed = True, f"cannot read round {s.name}: {e}"
            nxt = None
        if nxt is not None:
            self.add(s, nxt)
        elif s.search.failed or s.search.note:
            tail = ("" if s.search.failed else "; its followers do not run" if s.search.follower_value() is None
                    else "; its followers run at the closest round's value, marked 'not reached'")
            print(f"calibration {s.search.label}: {s.search.failed or s.search.note}{tail}", flush=True)

    def add(self, s, nxt):
        """A run born of run s (a search's next round, a fill-in) goes right after it."""
        if nxt is None:
            return
        self.order[id(nxt)], nxt.rank = self.order[id(s)], s.rank
        self.specs.insert(self.specs.index(s) + 1, nxt)
        self.born.append(nxt)

    def settle_all(self):
        """place() until a pass settles, queues and bears nothing more: the rounds and fill-ins
        replayed from disk, and the followers they free, are queued before any run starts, so a
        resumed sweep keeps the queue's order (one pass started a later run while an earlier
        fill-in was still being born)."""
        while True:
            before = (len(self.state), len(self.queue))
            self.place()
            if not self.born and (len(self.state), len(self.queue)) == before:
                return

    def place(self):
        """One pass over the pending runs (and the rounds born since): settle the blocked and
        the skipped, queue the ready, keep the rest pending."""
        self.pending, self.born[:] = self.pending + self.born, []
        self.pending = [s for s in self.pending if self._place(s)]
        # an earlier profile of the sweep first (sweep.py several profiles), then runs others
        # wait for, then profile order
        self.queue.sort(key=lambda s: (s.rank, not s.dependents and s.search is None, self.order[id(s)]))

    def _place(self, s):
        """Settle, queue or keep one pending run; True to keep it pending."""
        if self._blocked(s):
            return False
        dep_states = [self.state.get(id(d), ("",))[0] for d in s.deps]
        if (not all(st in ("finished", "skipped") for st in dep_states) or s.waiting_on_search()
                or s.deps_searching()):
            return True
        if s.cfg is None:
            try:
                materialize(s, self.results)
            except (C.ConfigError, OSError, KeyError, ValueError, paths.RunFolderError) as e:
                self.settle(s, "failed", f"config: {e}")
                print(f"FAILED {s.label()}: {e}", flush=True)
                return False
        other = self.claimed.get(s.name)
        if other is not None and other is not s:   # the same run twice in a profile
            if id(other) not in self.state:
                return True
            st = self.state[id(other)]
            self.settle(s, *(("skipped", "") if st[0] in ("finished", "skipped") else st))
            return False
        self.claimed[s.name] = s
        if is_finished(s.cfg, self.results) and not weights_wanted(s, self.users.get(id(s)), self.results):
            self.settle(s, "skipped")
        else:
            self.queue.append(s)
        return False

    def _blocked(self, s):
        """Settle s as `blocked` (a dependency failed, was blocked or held; its λ search failed)
        or `not run` (its λ search missed the target); True when it did."""
        state = self.state
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
            return True
        if not bad and failed:
            state[id(s)] = ("blocked", f"calibration: {failed[0]}")
        elif bad:
            state[id(s)] = ("blocked", f"{bad[0].name or bad[0].label()} {state[id(bad[0])][0]}")
        else:
            return False
        print(f"blocked {s.label()}: {state[id(s)][1]}", flush=True)
        return True

    def _total(self):
        return len(self.began) + len(self.queue) + len(self.pending) + len(self.born)

    def start(self):
        """Hand the launcher as many queued runs as it has free slots: `[k/N] start RUN`
        (under --until only runs whose estimate ends before it, in queue order)."""
        n = self.launcher.free(len(self.running))
        if n and self.queue:
            total = self._total()
            chosen = self.queue[:n] if self.until is None else self._fitting(n)
            for s in chosen:
                self.began[id(s)] = time.time()
                self.number[id(s)] = len(self.began)
                print(f"[{len(self.began)}/{total}] start {s.name}", flush=True)
            if chosen:
                self.running.update(self.launcher.submit(chosen))
            self.queue = [s for s in self.queue if all(s is not c for c in chosen)]

    def stop_at_until(self):
        """Settle what is left as `not run` and say so in one line."""
        ready, waiting = len(self.queue), len(self.pending)
        for s in self.queue + self.pending:
            self.state[id(s)] = ("not run", "its estimate ends after --until")
        self.queue, self.pending = [], []
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.until))
        print(f"--until {when}: stopped; {ready} ready run(s) would end after it"
              + (f", {waiting} more wait on runs not yet trained" if waiting else "")
              + " (run the same command to go on)", flush=True)

    def _fitting(self, n):
        """Up to n queued runs, in queue order, whose estimated end is before --until."""
        now, out = time.time(), []
        for s in self.queue:
            if len(out) == n:
                break
            if now + self.costs.left(s, self.results) <= self.until:
                out.append(s)
        return out

    def end(self, s, code, note):
        """A run ended with exit status `code`: `[k/N] done|held|FAILED RUN (took, elapsed, ETA)`."""
        for h in [h for h, v in self.running.items() if v is s]:
            del self.running[h]
        self.took.append(time.time() - self.began.get(id(s), self.t_sweep))
        self.ended.append(s)
        total = self._total()
        left = total - len(self.took)
        rest = list(self.running.values()) + self.queue + self.pending + self.born
        eta = cli.duration(self.costs.eta(self.ended, self.took, rest) / self.jobs) if left else "0s"
        times = (f"took {cli.duration(self.took[-1])}; elapsed {cli.duration(time.time() - self.t_sweep)}, "
                 f"ETA {eta}")
        status, note = ("finished", "") if code == 0 else ("failed", note)
        if code == HELD:   # another sweep trains it now: not a failure of this one
            status, note = "held", f"held by another process (PID {holder(self.results, s.name)}), skipped"
        word = {"finished": "done", "held": "held"}.get(status, "FAILED")
        print(f"[{self.number.get(id(s), len(self.took))}/{total}] {word} {s.name} ({times})"
              + (f": {note}" if note else ""),
              flush=True)
        self.settle(s, status, note)


class _Costs:
    """Each run's cost for the sweep's ETA: its epochs x the seconds an epoch of its data,
    model, width and method took in the complete runs of RESULTS/runs (timing.epoch_time), the
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

    def left(self, s, results):
        """Seconds run s needs to end, for --until: its epochs not yet in its metrics.csv x its
        epoch time (_epochs_time; where none of its data, model, width and method ran, the
        slowest epoch measured of any, a bound, not a guess), x 1.1 and + 60 s for the start and
        the final evaluation. Infinite where no epoch was ever measured: it does not start."""
        epochs, t = self._epochs_time(s)
        if not t:
            t = self.slowest()
        if not t:
            return float("inf")
        try:
            done = len(summaries.read_metrics(paths.run_dir(results, s.name))) if s.name else 0
        except (OSError, paths.RunFolderError):
            done = 0
        return max(0, epochs - done) * t * 1.1 + 60.0

    def slowest(self):
        """The slowest mean epoch time of any data, model, width and method measured (None: none)."""
        means = [sum(v[0] for v in by.values()) / max(1, sum(v[1] for v in by.values()))
                 for by in self.measured.values() if by]
        return max(means) if means else None

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
