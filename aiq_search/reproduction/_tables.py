"""The report's tables and sentences that describe one study or one noise series, as markdown text."""

from __future__ import annotations

import statistics
from typing import Any

from aiq_search.reproduction._findings import Findings, NoiseRow, grid_of

__all__ = ["grid_line", "name", "noise_levels", "pct", "pts", "ran_table", "recipe", "table"]


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"



def pts(x: float) -> str:
    return f"{100 * x:+.2f}"



def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"



def name(summary: dict[str, Any]) -> str:
    return f"`{summary['file'] or summary['study']}`"



def ran_table(findings: Findings, missing: list[tuple[str, str]]) -> str:
    rows = []
    for s in findings.summaries:
        cfg, trials = s["config"], s["trials"]
        size = grid_of(s) if cfg["study"]["sampler"] == "grid" else cfg["study"]["n_trials"]
        devices = ", ".join(sorted({t["device"] for t in trials}))
        epochs = sum(t["epochs"] for t in trials) / len(trials)
        rows.append([name(s), cfg["study"]["sampler"], f"{len(trials)} of {size}{_failed(s)}",
                     cfg["training"]["max_epochs"],
                     f"{epochs:.1f}", f"{cfg['data'].get('label_noise', 0.0):g}", devices,
                     f"{sum(t['train_seconds'] for t in trials) / 60:.1f}", f"{s['wall_seconds'] / 60:.1f}"])
    rows += [[f"`{file}`", "", why, "", "", "", "", "", ""] for file, why in missing]
    return table(["study file", "sampler", "complete", "max epochs", "mean epochs run", "label noise",
                   "device", "training (min, all trials)", "wall (min)"], rows)



def _failed(summary: dict[str, Any]) -> str:
    """How many trials failed (a worker stopped, a diverging network), if any: they were run again."""
    failed = summary["counts"].get("FAIL", 0)
    return f" ({failed} failed, run again)" if failed else ""


def recipe(summary: dict[str, Any]) -> str:
    t, m = summary["config"]["training"], summary["config"]["metrics"]
    nesterov = ", Nesterov" if t["nesterov"] else ""
    return (f"{t['optimizer'].upper()} lr {t['lr']:g}, momentum {t['momentum']:g}{nesterov}, weight decay "
            f"{t['weight_decay']:g}, batch {t['batch_size']}, early stopping with patience {t['patience']} on "
            f"the validation split ({summary['config']['data']['val_size']:g} of the training images), at most "
            f"{t['max_epochs']} epochs; β = {m['beta']:g}; scored on the {summary['config']['study']['eval_split']} "
            "split")



def grid_line(summary: dict[str, Any]) -> str:
    """The grid's lists, its parameter range (which bounds the ratio of finding 1) and how many networks
    ran into the epoch limit instead of stopping early."""
    search = summary["config"]["search"]
    lists = "; ".join(f"`{k}` ∈ {{{', '.join(str(v) for v in values)}}}" for k, values in search.items()
                      if isinstance(values, list))
    params = [t["n_params"] for t in summary["trials"]]
    limit = summary["config"]["training"]["max_epochs"]
    at_limit = sum(t["epochs"] >= limit for t in summary["trials"])
    return (f"Grid: {lists}. Its networks have {min(params):,} to {max(params):,} parameters (a factor of "
            f"{max(params) / min(params):,.0f}, the largest ratio this grid can show); {at_limit} of "
            f"{len(params)} trained until the limit of {limit} epochs instead of stopping early.\n")



def noise_levels(rows: dict[str, list[NoiseRow]]) -> str:
    """Finding 3 per noise level: accuracy, efficiency, how often efficiency rose above the clean network's,
    and when efficiency stopped falling against when training accuracy peaked."""
    clean = {shape: r.trial["network_efficiency"] for shape, v in rows.items() for r in v if r.noise == 0}
    levels = sorted({r.noise for v in rows.values() for r in v})
    levels_rows = []
    for noise in levels:
        at = [(shape, r) for shape, v in rows.items() for r in v if r.noise == noise]
        above = [r.trial["network_efficiency"] > clean[shape] for shape, r in at if shape in clean]
        levels_rows.append([f"{noise:g}", len(at), pct(statistics.median(r.trial["test_accuracy"] for _, r in at)),
                      f"{statistics.median(r.trial['network_efficiency'] for _, r in at):.4f}",
                      f"{sum(above)} of {len(above)}" if noise > 0 else "",
                      statistics.median(r.epochs["min_efficiency"] or 0 for _, r in at),
                      statistics.median(r.epochs["best_train"] or 0 for _, r in at),
                      statistics.median(r.epochs["ran"] for _, r in at)])
    return table(["label noise", "networks", "test accuracy", "efficiency", "above clean",
                   "epoch of lowest efficiency", "epoch of best training accuracy", "epochs run"], levels_rows)
