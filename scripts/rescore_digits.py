"""Re-score the retired digits results (committed up to ddc6968) under the current evidence
rules, without rerunning anything: their summaries are read from git history.

    python -m scripts.rescore_digits [COMMIT]

They lack structural MACs (claim 2 then has no evidence) and their λ searches followed the old
rules; every other rule (test-set error at 360 images, Holm, points every seed ran, Pareto
envelope, no interpolation through collapsed runs) applies as in reporting/.
"""
import io
import json
import math
import os
import subprocess
import sys
import tarfile

import pandas as pd

from sparsecs import criteria
from sparsecs import data
from sparsecs.reporting import claims as CL


def main(commit="ddc6968"):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tar = subprocess.run(["git", "archive", commit, "results/runs"], cwd=repo, capture_output=True, check=True).stdout
    rows = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            if m.name.endswith("/summary.json"):
                s = json.load(t.extractfile(m))
                if s.get("profile") == "digits":
                    rows.append(s)
    df = pd.DataFrame(rows)
    for c in ("profile", "entry", "role", "row", "swept_key", "swept_value", "init_from"):
        df[c] = df[c].fillna("").astype(str)
    df["acc"] = df["test_acc"]
    df["mac_frac"] = math.nan
    df["collapsed"] = [criteria.collapsed(r) for r in df.to_dict("records")]
    df["n_test"] = data.get("digits").n_test
    print(f"{len(df)} digits runs of {commit}; {int(df['collapsed'].sum())} collapsed")
    for num, title, rule, v, mine in CL.claim_verdicts(CL.comparisons(df)):
        print(f"claim {num} ({title}): {v}")
        for c in mine:
            lv = "; ".join(f"{100 * x['level']:g}%: {sum(x['a']) / len(x['a']):.2f} vs "
                           f"{sum(x['b']) / len(x['b']):.2f} ({x['outcome']})" for x in c["levels"])
            print(f"    {c['a']['entry']} vs {c['b']['entry']}: {c['outcome']}" + (f"; {lv}" if lv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
