"""Which runs of a profile `export.py --profile` exports: every run at the profile's
`export_levels` (csr) and every structured run at its `export_macs_levels` (slim), read from
the report's loaded frame so that the exported points are the ones the report compares."""
from sparsecs.exporting.files import ExportError

MACS = "macs_structural_fraction"


def profile_of(profile):
    from sparsecs.reporting import load
    from sparsecs.sweeping.profile import load_profile

    return load_profile(load.profile_path(profile))


def _at_levels(df, levels, wanted, target_of, rounds=False):
    """{level: [run folder]}: every seed of the points of the curves `wanted` picks whose
    target (`target_of` a run row, or None) is a level; a search's other rounds are not,
    unless `rounds` (every complete run at a level's target, points or not)."""
    from sparsecs.reporting import claims as CL
    from sparsecs.reporting.envelope import full_points

    out = {lv: [] for lv in levels}
    for part in CL.curves(df).values():
        if not wanted(part):
            continue
        for _, r in (part if rounds else full_points(part)).iterrows():
            target = target_of(r)
            for lv in levels:
                if target is not None and abs(target - lv) < 1e-9:
                    out[lv].append(r["folder"])
    return out


def _calibrated(r):
    t = r["calibration_target"]
    return None if t != t else float(t)


def level_runs(profile, results, df=None, rounds=False):
    """{level: [run folder]} for the profile's `export_levels`: the runs of every sparse
    entry's point that stands for the level (a λ search's calibrated point, every seed, or a
    grid's target), complete in RESULTS (reporting.load). A search's other rounds are not,
    unless `rounds`: while a search goes on, any of its rounds may become its point."""
    from sparsecs.reporting import load

    levels = profile_of(profile).get("export_levels")
    if not levels:
        raise ExportError(f"{profile}: the profile has no export_levels: [...] (the sparsities whose "
                          f"runs export.py --profile exports)", 2)
    df = load.load(profile, results)[0] if df is None else df
    elementwise = lambda part: (part["role"].iloc[0] != "dense"  # noqa: E731
                                and part["mode"].iloc[0] == "elementwise")
    target = lambda r: (_calibrated(r) if _calibrated(r) is not None else  # noqa: E731
                        _number(r["swept_value"]) if str(r["swept_key"]).endswith("target") else None)
    return _at_levels(df, levels, elementwise, target, rounds)


def structured_runs(profile, results, df=None):
    """{MACs level: [run folder]} for the profile's `export_macs_levels`: every seed of the
    calibrated point of each structured entry (mode kernel or channel, what the report's
    structured claim compares) searched on target_metric macs_structural_fraction, at each
    level. A structured grid, or a search on another metric, is at no MACs level: not listed."""
    from sparsecs.optim.base import STRUCTURED_MODES
    from sparsecs.reporting import load

    prof = profile_of(profile)
    levels = prof.get("export_macs_levels") or []
    on_macs = {e.get("name") for e in prof["runs"] if e.get("target_metric") == MACS}
    df = load.load(profile, results)[0] if df is None and levels else df
    wanted = lambda part: (part["mode"].iloc[0] in STRUCTURED_MODES  # noqa: E731
                           and part["entry"].iloc[0] in on_macs)
    return _at_levels(df, levels, wanted, _calibrated) if levels else {}


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
