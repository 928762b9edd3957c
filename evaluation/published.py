"""Published results shown beside ours, marked "reported, not run" and never aggregated with ours.

Each entry: domain, instance set (our name for the same benchmark set), policy, metric, value,
citation, and a note on the conditions. Figures are copied from the papers as quoted in
``shared/DESIGN.md`` and the issues, except Vidur's, which come from a local run of Vidur read from
``envs/data/llmserve/vidur_reference.json``; nothing here is computed by schedgym.
"""

from __future__ import annotations

from typing import Any

_TAILLARD_SETS = ["taillard_15x15", "taillard_20x15", "taillard_20x20", "taillard_30x15", "taillard_30x20",
                  "taillard_50x15", "taillard_50x20", "taillard_100x20"]

# the self-labeling repository's results sheet (output/Results.xlsx), DESIGN.md section 11
_SL = "Corsini et al., NeurIPS 2024, self-labeling repository output/Results.xlsx"

_JOBSHOP_GAPS = {
    # policy: (citation, note, gaps by size in _TAILLARD_SETS order), mean gap % to the best known upper
    # bound; the note says how the figure was obtained (greedy / best of k / improvement steps / time limit)
    "L2D": ("Zhang et al., NeurIPS 2020 (as reported by Corsini et al., NeurIPS 2024)", "greedy",
            [26.0, 30.0, 31.6, 33.0, 33.6, 22.4, 26.5, 13.6]),
    "ScheduleNet": ("Park et al., 2021 (as reported by Corsini et al., NeurIPS 2024)", "greedy",
                    [15.3, 19.4, 17.2, 19.1, 23.7, 13.9, 13.5, 6.7]),
    "SPN (self-labeling)": ("Corsini et al., NeurIPS 2024", "greedy", [13.8, 15.0, 15.2, 17.1, 18.5, 10.1, 11.6, 5.9]),
    "SPN (self-labeling) x128": (_SL, "best of 128 samples", [7.3, 9.3, 10.0, 11.0, 13.4, 5.5, 8.4, 2.3]),
    "SPN (self-labeling) x512": ("Corsini et al., NeurIPS 2024", "best of 512 samples",
                                 [6.5, 8.8, 9.0, 10.6, 12.7, 4.9, 7.6, 2.1]),
    "SPN (self-labeling) x1024": (_SL, "best of 1024 samples", [6.0, 8.4, 8.7, 10.1, 12.4, 4.6, 7.2, 1.6]),
    "MWKR (published)": ("Corsini et al., NeurIPS 2024", "non-delay dispatching rule",
                         [19.1, 23.3, 21.8, 24.1, 24.8, 16.5, 17.8, 8.3]),
    "randomised MOR x128 (published)": (
        _SL, "best of 128 samples: deterministic MOR, then 127 with the priority order perturbed by a "
        "sliding window of 3 (our policy=random_mor)", [12.6, 16.4, 14.7, 17.3, 20.4, 13.5, 14.0, 7.1]),
    "Shifting Bottleneck (published)": (
        "Adams, Balas & Zawack, Management Science 1988 (as reported by " + _SL + ")",
        "greedy: one deterministic construction", [11.6, 10.9, 13.6, 15.1, 17.7, 13.2, 20.8, 15.6]),
    "INSA (published)": (
        "Nowicki & Smutnicki, Management Science 1996 (as reported by " + _SL + ")",
        "greedy: one deterministic insertion construction", [14.5, 18.9, 17.3, 21.1, 22.6, 15.9, 20.3, 13.5]),
    "CP-SAT 3600 s (published)": (
        "OR-Tools CP-SAT (as reported by " + _SL + ")", "time limit 3600 s per instance",
        [0.02, 0.25, 0.71, 2.06, 2.84, 0.0, 2.83, 3.95]),
    "TBGAT 5000 steps (published)": (
        "Zhang et al., UAI 2024, TBGAT repository results/Detailed Cmax.txt",
        "improvement steps: 5000 from an initial solution", [5.1, 6.3, 6.8, 6.9, 10.1, 2.6, 4.8, 1.3]),
}

_VMR2L = {
    # final fragment rate, VMR2L's medium data set (279 PMs, 2,089 VMs), MNL 50, initial FR about 0.555
    "MIP (VMR2L paper)": (0.285, "about 50 min"),
    "VMR2L": (0.295, "about 3 s on a GPU"),
    "POP": (0.345, ""),
    "NeuPlan": (0.358, ""),
    "MCTS": (0.378, ""),
    "GA": (0.387, ""),
    "alpha-VBPP": (0.387, ""),
    "Decima": (0.448, ""),
}


def published_rows() -> list[dict[str, Any]]:
    """All reported rows as dicts with keys domain, instance_set, policy, metric, value, citation, note."""
    rows: list[dict[str, Any]] = []
    for policy, (cite, note, gaps) in _JOBSHOP_GAPS.items():
        for set_name, gap in zip(_TAILLARD_SETS, gaps, strict=True):
            rows.append({"domain": "jobshop", "instance_set": set_name, "policy": policy, "metric": "gap_to_bks_pct",
                         "value": gap, "citation": cite, "note": note})
    for policy, (fr, note) in _VMR2L.items():
        # VMR2L's medium data set is not redistributable; our generated_m is calibrated to it
        # (same PM size, VM type mix, utilisation, initial FR about 0.55-0.60), not the same data.
        rows.append({"domain": "vmsched", "instance_set": "generated_m", "policy": policy,
                     "metric": "fragment_rate", "value": fr, "citation": "VMR2L, EuroSys 2025",
                     "note": ("on VMR2L's own medium data set (initial FR about 0.555), MNL 50; " + note).strip("; ")})
    rows.extend(_vidur_rows())
    return rows


def _vidur_rows() -> list[dict[str, Any]]:
    """Vidur's figures from the one reference file (a local run of Vidur, not the paper's numbers)."""
    from schedgym.envs.llmserve.reference import vidur_citation, vidur_reference

    rows = []
    for iset, setting in vidur_reference()["settings"].items():
        for metric, value in setting["metrics"].items():
            rows.append({"domain": "llmserve", "instance_set": iset, "policy": "Vidur (vLLM v0 model)",
                         "metric": metric, "value": value, "citation": vidur_citation(),
                         "note": "TPOT as Vidur defines it: decode time / output tokens"})
    return rows
