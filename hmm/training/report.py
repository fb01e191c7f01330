"""The published result of a training: the model, a table, a curve and heatmaps."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from hmm.core import persistence
from hmm.core.base import BaseHMM
from hmm.training.spec import TrainingSpec

if TYPE_CHECKING:
    from hmm.core.relabel import Relabelling


def iteration_table(records: list[dict[str, Any]]) -> str:
    """Markdown table of committed iterations (iteration 0 is the initial parameters)."""
    lines = [
        "| iteration | log-likelihood of previous parameters | delta | E-step s | converged |",
        "|---:|---:|---:|---:|:---:|",
    ]
    for r in records:
        if r["iteration"] == 0:
            lines.append("| 0 | (initial parameters) | | | |")
            continue
        delta = "" if r["improvement"] is None else f"{r['improvement']:+.6g}"
        estep = r.get("timings", {}).get("estep_seconds")
        seconds = "" if estep is None else f"{estep:.2f}"
        lines.append(
            f"| {r['iteration']} | {r['log_likelihood']:.6f} | {delta} | {seconds} "
            f"| {'yes' if r['converged'] else ''} |"
        )
    return "\n".join(lines)


def _figures(records: list[dict[str, Any]], model: BaseHMM) -> dict[str, bytes]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the report extra is not installed: tables only
        return {}
    figures: dict[str, bytes] = {}
    steps = [r for r in records if r["iteration"] >= 1]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([r["iteration"] - 1 for r in steps], [r["log_likelihood"] for r in steps], marker="o")
    axis.set_xlabel("parameters after k updates")
    axis.set_ylabel("log-likelihood")
    axis.set_title("EM log-likelihood")
    axis.grid(alpha=0.3)
    figures["log_likelihood.png"] = _png(figure, plt)
    matrices = {"transition matrix": model.transmat_}
    for name in ("emissionprob_", "means_", "lambdas_"):
        if hasattr(model, name) and np.ndim(getattr(model, name)) == 2:
            matrices[name.rstrip("_")] = getattr(model, name)
    figure, axes = plt.subplots(1, len(matrices), figsize=(4.5 * len(matrices), 3.5), squeeze=False)
    for axis, (title, matrix) in zip(axes[0], matrices.items(), strict=True):
        image = axis.imshow(matrix, aspect="auto", cmap="viridis")
        axis.set_title(title)
        axis.set_ylabel("state")
        axis.set_yticks(range(matrix.shape[0]))
        if title == "transition matrix":
            axis.set_xticks(range(matrix.shape[1]))
            axis.set_xlabel("next state")
        figure.colorbar(image, ax=axis)
    figures["parameters.png"] = _png(figure, plt)
    return figures


def _number(value: Any, spec: str = ".6f") -> str:
    return "" if value is None else format(value, spec)


def candidates_section(
    records: list[dict[str, Any]], relabelling: Relabelling | None = None
) -> tuple[str, dict[str, bytes]]:
    """The report's part on candidate models (issue 13): markdown and figures; empty without candidates.

    A table of every candidate of the last COMMIT (number of states, seed, status, log-likelihood,
    held-out log-likelihood, AIC, BIC), the state relabelling to the ``init_from`` reference
    (permutation and drift per state), and ``candidates.png``: one log-likelihood curve per candidate.
    """
    last = records[-1]
    parts = []
    figures: dict[str, bytes] = {}
    if "candidates" in last:
        lines = [
            "## Candidates",
            "",
            "| # | states | seed | start | status | log-likelihood | held-out | AIC | BIC |",
            "|---:|---:|---:|:---|:---|---:|---:|---:|---:|",
        ]
        best = last.get("best_candidate", 0)
        for entry in last["candidates"]:
            mark = " (best)" if entry["index"] == best else ""
            lines.append(
                f"| {entry['index']}{mark} | {entry['n_components']} | {entry['seed']} "
                f"| {'warm' if entry.get('warm_start') else 'random'} | {entry['status']} "
                f"| {_number(entry['log_likelihood'])} | {_number(entry['holdout_log_likelihood'])} "
                f"| {_number(entry['aic'], '.2f')} | {_number(entry['bic'], '.2f')} |"
            )
        parts.append("\n".join(lines))
        figures.update(_candidate_curves(records))
    if relabelling is not None:
        pin = records[0].get("init_from") or {}
        lines = [
            "## State labels",
            "",
            f"States renumbered to match the model of training `{pin.get('training_id')}` "
            f"(iteration {pin.get('iteration')}): new state i was state `order[i]` = {relabelling.order}.",
            "",
            "| state | was | reference state | emission divergence (nats) | transition change (L1) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in relabelling.as_rows():
            lines.append(
                f"| {row['state']} | {row['was']} | {'' if row['reference_state'] is None else row['reference_state']} "
                f"| {_number(row['emission_divergence'], '.4g')} | {_number(row['transition_change'], '.4g')} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts), figures


def _candidate_curves(records: list[dict[str, Any]]) -> dict[str, bytes]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for entry in records[-1]["candidates"]:
        index = entry["index"]
        points = [
            (r["iteration"] - 1, r["candidates"][index]["log_likelihood"])
            for r in records
            if r["iteration"] >= 1 and r["candidates"][index]["iteration"] == r["iteration"]
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker=".", label=f"#{index}: {entry['n_components']} states, seed {entry['seed']}")
    axis.set_xlabel("parameters after k updates")
    axis.set_ylabel("log-likelihood")
    axis.set_title("EM log-likelihood per candidate")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return {"candidates.png": _png(figure, plt)}


def _png(figure: Any, plt: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def build_report(
    spec: TrainingSpec, records: list[dict[str, Any]], model: BaseHMM, relabelling: Relabelling | None = None
) -> dict[str, bytes]:
    """Files to publish under ``model/``: name -> bytes (``relabelling``: the states' renumbering, if any)."""
    last = records[-1]
    figures = _figures(records, model)  # none without matplotlib (the report extra): then none is listed
    candidates, candidate_figures = candidates_section(records, relabelling)
    figures.update(candidate_figures)
    summary = {
        "spec": json.loads(spec.to_json()),
        "iterations": records,
        "final_iteration": last["iteration"],
        "converged": bool(last["converged"]),
        "startprob": model.startprob_.tolist(),
        "transmat": model.transmat_.tolist(),
    }
    if relabelling is not None:
        summary["relabelling"] = relabelling.as_rows()
    markdown = "\n\n".join(
        [
            f"# hmm-em training report\n\nModel: {spec.model}, {spec.n_components} states; data: `{spec.data}`; "
            f"tol {spec.tol}, max_iter {spec.max_iter}, seed {spec.seed}.",
            f"Final parameters: iteration {last['iteration']} "
            f"({'converged' if last['converged'] else 'not converged'}).",
            iteration_table(records),
            *([candidates] if candidates else []),
            "Files: `model.npz` (load with `hmm.load`), `report.json`"
            + "".join(f", `{name}`" for name in figures)
            + ".",
        ]
    )
    files = {
        "model.npz": persistence.dumps(model),
        "report.json": json.dumps(summary, indent=2, sort_keys=True).encode(),
        "report.md": (markdown + "\n").encode(),
    }
    files.update(figures)
    return files
