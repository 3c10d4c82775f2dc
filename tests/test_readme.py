"""What the README promises a newcomer: the quick start, the profile table's run counts (against
what --dry-run lists), the licence and the citations (CITATION.cff, the BibTeX of both papers)."""
import glob
import os
import re

import pytest
import yaml

import sweep

from tests import REPO

README = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()


def section(title):
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def test_the_readme_opens_with_a_quick_start_a_status_box_and_one_run():
    heads = re.findall(r"^## (.+)$", README, re.M)
    assert heads[:3] == ["Quick start", "One run", "The two papers"]
    quick = section("Quick start")
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1).splitlines()
    assert 1 < len(block) <= 10
    assert block[0].startswith("bash test.sh") and block[1].startswith("bash reproduce.sh --quick")
    for line in block:                      # every file and profile it names exists
        for path in re.findall(r"(configs/\S+\.yaml)", line):
            assert os.path.isfile(os.path.join(REPO, path)), line
        tool = re.match(r"(?:python|bash) (\S+)", line)
        if tool:
            assert os.path.isfile(os.path.join(REPO, tool.group(1))), line
        prof = re.match(r"python (?:sweep|report)\.py (\w+)", line)
        if prof:
            assert os.path.isfile(os.path.join(REPO, "configs", "profiles", f"{prof.group(1)}.yaml")), line
    assert "--quick" in open(os.path.join(REPO, "reproduce.sh")).read()
    status = quick[quick.index("> **Status"):]
    for word in ("fashion", "complete", "digits", "retired", "CIFAR", "ImageNet", "not run", "no GPU"):
        assert word in status, word
    # the two commands stay shown where the reproduction is described
    assert "bash reproduce.sh --quick" in section("Reproduce") and "bash test.sh" in section("Reproduce")


def _table_counts():
    rows = re.findall(r"^\| `(\w+)` \|[^\n]*\| ([^|\n]+) \|$", section("Sweeps and SLURM"), re.M)
    return {name: int(re.match(r"\s*(\d+)", runs).group(1)) for name, runs in rows}


def test_the_profile_table_lists_what_dry_run_lists(tmp_path, capsys):
    counts = _table_counts()
    profiles = {os.path.basename(p)[:-5] for p in glob.glob(os.path.join(REPO, "configs", "profiles", "*.yaml"))}
    assert set(counts) == profiles            # every profile, and only those
    listed = {}
    for name in sorted(profiles):
        assert sweep.main([name, "--dry-run", "--results", str(tmp_path / "empty")]) == 0
        out = capsys.readouterr().out
        listed[name] = int(re.search(r"^(\d+) runs: ", out, re.M).group(1))
    assert counts == listed


def _bibtex():
    entries = {}
    for key, body in re.findall(r"@\w+\{(\w+),\n(.*?)\n\}", section("Citing and licence"), re.S):
        entries[key] = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", body, re.M))
    return entries


def test_licence_citation_file_and_bibtex_agree():
    lic = open(os.path.join(REPO, "LICENSE")).read()
    assert lic.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in lic
    with open(os.path.join(REPO, "CITATION.cff")) as f:
        cff = yaml.safe_load(f)
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["title"] and cff["message"] and cff["authors"]
    bib = _bibtex()
    assert len(bib) == 2
    for ref in cff["references"]:
        arxiv = ref["identifiers"][0]["value"].removeprefix("arXiv:")
        entry = next(e for e in bib.values() if e["eprint"] == arxiv)
        assert entry["title"] == ref["title"] and entry["year"] == str(ref["year"])
        authors = [a.split(",")[0].strip() for a in entry["author"].split(" and ")]
        assert authors == [a["family-names"] for a in ref["authors"]]
    assert {e["eprint"] for e in bib.values()} == {"2008.09661", "2302.13019"}
    assert {e["title"] for e in bib.values()} == {"Training Sparse Neural Networks using Compressed Sensing",
                                                  "A Unified Framework for Soft Threshold Pruning"}


def test_citation_file_is_valid_cff():
    cffconvert = pytest.importorskip("cffconvert", reason="cffconvert not installed (pip install cffconvert)")
    cffconvert.Citation(open(os.path.join(REPO, "CITATION.cff")).read()).validate()   # raises when invalid
    with pytest.raises(Exception, match="authors"):                                   # and it does check
        cffconvert.Citation("cff-version: 1.2.0\nmessage: m\ntitle: t\n").validate()
