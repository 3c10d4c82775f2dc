"""The sweep machinery behind sweep.py, one job per module:

    profile.py   the profile language and its expansion into runs (Spec)
    search.py    the λ search (Search)
    plan.py      run state: dependencies, names, done or not, the next round, replay from disk
    launch.py    the local launcher (one train.py process per run)
    slurm.py     the SLURM launcher (submitit)
    schedule.py  the scheduler, the status table, --dry-run

The report (reporting/) imports profile and plan only, never a launcher.
"""
