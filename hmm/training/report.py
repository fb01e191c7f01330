"""The published result of a training: the model, a table, a curve and heatmaps."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from hmm.core import persistence
from hmm.core.base import BaseHMM
from hmm.training.spec import TrainingSpec


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


def _png(figure: Any, plt: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def build_report(spec: TrainingSpec, records: list[dict[str, Any]], model: BaseHMM) -> dict[str, bytes]:
    """Files to publish under ``model/``: name -> bytes."""
    last = records[-1]
    figures = _figures(records, model)  # none without matplotlib (the report extra): then none is listed
    summary = {
        "spec": json.loads(spec.to_json()),
        "iterations": records,
        "final_iteration": last["iteration"],
        "converged": bool(last["converged"]),
        "startprob": model.startprob_.tolist(),
        "transmat": model.transmat_.tolist(),
    }
    markdown = "\n\n".join(
        [
            f"# hmm-em training report\n\nModel: {spec.model}, {spec.n_components} states; data: `{spec.data}`; "
            f"tol {spec.tol}, max_iter {spec.max_iter}, seed {spec.seed}.",
            f"Final parameters: iteration {last['iteration']} "
            f"({'converged' if last['converged'] else 'not converged'}).",
            iteration_table(records),
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
