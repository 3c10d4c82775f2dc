"""The sweep machinery behind sweep.py, one job per module:

    profile.py   the profile language: its keys and checks, the run (Spec), the lookup
    expansion.py a profile's expansion into runs
    search.py    the λ search (Search)
    plan.py      run state: dependencies, names, done or not, the next round, replay from disk
    selection.py --only, --seeds, --levels: the runs kept and the runs they need
    startfrom.py start_from: round 1 from another profile's search, scaled by the budget factor
    timing.py    epoch seconds measured on disk, the estimate for a run still to train
    launch.py    the local launcher (one train.py process per run)
    slurm.py     the SLURM launcher (submitit)
    schedule.py  the scheduler, the status table
    dryrun.py    --dry-run: the runs, what is done, the cost left

The report (reporting/) imports profile, expansion and plan only, never a launcher.
"""
