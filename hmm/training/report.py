"""The published result of a training: the model, and a report as markdown, JSON and one HTML page.

The report shows what the states learned, in the data's own names: for a categorical model the
most likely symbols of each state (labelled bars, the symbols' names when the model has a
vocabulary) and every symbol's probability per state (a table); for Gaussian, Poisson and GMM
models the mean and spread (standard deviation) of each feature per state; the transition
matrix with its values; and the training's course, the log-likelihood per observation with the
gain of each iteration on a log scale. ``report.html`` is self-contained (its figures inline as
base64 PNG), so it opens from S3, a mail or a laptop alike. Figures need matplotlib (the
``report`` extra); without it the report has its tables only.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from hmm.core import persistence
from hmm.core.base import BaseHMM
from hmm.training.spec import TrainingSpec

if TYPE_CHECKING:
    from hmm.core.relabel import Relabelling

#: Symbols shown per state in the bars, unless the vocabulary has at most ALL_SYMBOLS (all of them are
#: in the tables).
TOP_SYMBOLS = 10
ALL_SYMBOLS = 30
#: Panels per row of the per-state figures; features shown in the means figure.
PANELS_PER_ROW = 4
MAX_FEATURES_SHOWN = 12
#: Transition matrices up to this many states carry their values in the cells.
ANNOTATED_STATES = 30


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


# ------------------------------------------------------------------ what the model says, as data


def state_labels(model: BaseHMM) -> list[str]:
    return [f"state {k}" for k in range(model.n_components)]


def symbol_labels(model: BaseHMM) -> list[str]:
    """A categorical model's symbol names: its vocabulary, or the symbol indices."""
    symbols = getattr(model, "symbols", None)
    if symbols is not None:
        return [str(s) for s in symbols]
    return [str(k) for k in range(np.shape(model.emissionprob_)[1])]


def top_symbols(model: BaseHMM, count: int | None = None) -> list[list[tuple[str, float]]]:
    """Per state, its ``count`` most likely symbols and their probabilities, most likely first.

    Default: all of them for a vocabulary of at most :data:`ALL_SYMBOLS`, else :data:`TOP_SYMBOLS`.
    """
    names = symbol_labels(model)
    if count is None:
        count = len(names) if len(names) <= ALL_SYMBOLS else TOP_SYMBOLS
    emissions = np.asarray(model.emissionprob_)
    result = []
    for row in emissions:
        order = np.argsort(-row, kind="stable")[:count]
        result.append([(names[k], float(row[k])) for k in order])
    return result


def feature_moments(model: BaseHMM) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(what, means, spreads) per state and feature, shape (n_components, n_features), or None.

    Gaussian: means and standard deviations; Poisson: rates and their standard deviation
    (sqrt of the rate); GMM: the mixture's mean and standard deviation per state.
    """
    if hasattr(model, "lambdas_"):
        rates = np.asarray(model.lambdas_, dtype=float)
        return "rate", rates, np.sqrt(rates)
    if not hasattr(model, "means_"):
        return None
    means = np.asarray(model.means_, dtype=float)
    if means.ndim == 2:  # GaussianHMM: covars_ is (n_components, n_features, n_features) whatever the type
        variances = np.diagonal(np.asarray(model.covars_, dtype=float), axis1=-2, axis2=-1)
        return "mean", means, np.sqrt(variances)
    weights = np.asarray(model.weights_, dtype=float)
    variances = _gmm_variances(model, means.shape)
    mean = np.einsum("km,kmd->kd", weights, means)
    second = np.einsum("km,kmd->kd", weights, variances + means**2)
    return "mixture mean", mean, np.sqrt(np.maximum(second - mean**2, 0))


def _gmm_variances(model: BaseHMM, shape: tuple[int, ...]) -> np.ndarray:
    """Each mixture component's variance per feature, shape (n_components, n_mix, n_features)."""
    covars = np.asarray(model.covars_, dtype=float)
    kind = model.covariance_type
    if kind == "spherical":
        return np.broadcast_to(covars[:, :, None], shape)
    if kind == "diag":
        return covars
    if kind == "full":
        return np.diagonal(covars, axis1=-2, axis2=-1)
    return np.broadcast_to(np.diagonal(covars, axis1=-2, axis2=-1)[:, None, :], shape)  # tied


def per_observation(records: list[dict[str, Any]]) -> tuple[list[int], list[float], list[float | None]]:
    """(iterations, log-likelihood per observation, gain per observation) of the EM steps.

    Iteration k's COMMIT holds the log-likelihood of the parameters after k - 1 updates, and the
    gain of that update over the one before.
    """
    steps = [r for r in records if r["iteration"] >= 1 and r.get("log_likelihood") is not None]
    x = [r["iteration"] - 1 for r in steps]
    per = [r["log_likelihood"] / max(int(r.get("n_observations") or 1), 1) for r in steps]
    gains = [
        None if r.get("improvement") is None else r["improvement"] / max(int(r.get("n_observations") or 1), 1)
        for r in steps
    ]
    return x, per, gains


# ------------------------------------------------------------------------------------- figures


def _figures(records: list[dict[str, Any]], model: BaseHMM) -> dict[str, bytes]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the report extra is not installed: tables only
        return {}
    figures = {
        "log_likelihood.png": _png(_likelihood_figure(plt, records), plt),
        "parameters.png": _png(_transition_figure(plt, model), plt),
    }
    if hasattr(model, "emissionprob_"):
        figures["emissions.png"] = _png(_symbols_figure(plt, model), plt)
    elif feature_moments(model) is not None:
        figures["emissions.png"] = _png(_moments_figure(plt, model), plt)
    if "candidates" in records[-1]:
        figures["candidates.png"] = _png(_candidate_curves(plt, records), plt)
    return figures


def _likelihood_figure(plt: Any, records: list[dict[str, Any]]) -> Any:
    x, per, gains = per_observation(records)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(x, per, marker="o")
    left.set_title("Log-likelihood per observation")
    left.set_xlabel("parameters after k EM updates")
    left.set_ylabel("log-likelihood per observation (nats)")
    left.grid(alpha=0.3)
    positive = [(k, g) for k, g in zip(x, gains, strict=True) if g is not None and g > 0]
    other = [(k, g) for k, g in zip(x, gains, strict=True) if g is not None and g <= 0]
    if positive:
        right.semilogy([k for k, _ in positive], [g for _, g in positive], marker="o", label="gain > 0")
    if other:  # a zero or negative gain has no place on a log scale: marked on the axis
        floor = min((g for _, g in positive), default=1e-12)
        right.scatter([k for k, _ in other], [floor] * len(other), marker="x", color="red", label="gain <= 0")
        right.set_yscale("log")
    if positive or other:
        right.legend(loc="upper right", fontsize="small")
    right.set_title("Gain of each EM update (log scale)")
    right.set_xlabel("parameters after k EM updates")
    right.set_ylabel("gain per observation (nats)")
    right.grid(alpha=0.3, which="both")
    return figure


def _transition_figure(plt: Any, model: BaseHMM) -> Any:
    matrix = np.asarray(model.transmat_)
    states = matrix.shape[0]
    size = min(max(4.5, 0.45 * states + 2), 14)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    axis.set_title("Transition matrix P(next state | state)")
    axis.set_xlabel("next state")
    axis.set_ylabel("state")
    ticks = range(states)
    tick_size = 9 if states <= 12 else 7
    axis.set_xticks(ticks, [str(k) for k in ticks], fontsize=tick_size)
    axis.set_yticks(ticks, [str(k) for k in ticks], fontsize=tick_size)
    if states <= ANNOTATED_STATES:
        font = 10 if states <= 8 else 7 if states <= 15 else 5.5
        for i in range(states):
            for j in range(states):
                value = matrix[i, j]
                axis.text(
                    j, i, f"{value:.2f}", ha="center", va="center", fontsize=font,
                    color="black" if value > 0.6 else "white",
                )  # fmt: skip
    figure.colorbar(image, ax=axis, label="probability", fraction=0.046, pad=0.04)
    return figure


def _grid(plt: Any, panels: int, width: float, height: float) -> tuple[Any, list[Any]]:
    columns = min(PANELS_PER_ROW, panels)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for axis in flat[panels:]:
        axis.set_visible(False)
    return figure, flat[:panels]


def _symbols_figure(plt: Any, model: BaseHMM) -> Any:
    tops = top_symbols(model)
    shown = len(tops[0])
    names_all = symbol_labels(model)
    figure, axes = _grid(plt, len(tops), 3.6, 0.28 * shown + 1.3)
    largest = max(p for top in tops for _, p in top) or 1.0
    for state, (axis, top) in enumerate(zip(axes, tops, strict=True)):
        names = [_short(name) for name, _ in top]
        values = [p for _, p in top]
        positions = np.arange(len(top))
        axis.barh(positions, values, color="tab:blue")
        axis.set_yticks(positions, names, fontsize=8)
        axis.invert_yaxis()  # most likely first
        axis.set_xlim(0, largest * 1.3)
        for y, value in zip(positions, values, strict=True):
            axis.text(value, y, f" {value:.3f}", va="center", fontsize=7)
        axis.set_title(f"state {state}: {'all' if shown == len(names_all) else f'top {shown}'} symbols", fontsize=10)
        axis.set_xlabel("P(symbol | state)", fontsize=8)
        axis.tick_params(axis="x", labelsize=7)
    figure.suptitle(f"Emissions per state: P(symbol | state), {len(names_all)} symbols")
    return figure


def _moments_figure(plt: Any, model: BaseHMM) -> Any:
    moments = feature_moments(model)
    assert moments is not None
    what, means, spreads = moments
    features = min(means.shape[1], MAX_FEATURES_SHOWN)
    figure, axes = _grid(plt, features, 3.8, 3.0)
    states = np.arange(means.shape[0])
    for feature, axis in enumerate(axes):
        axis.errorbar(states, means[:, feature], yerr=spreads[:, feature], fmt="o", capsize=3)
        axis.set_title(f"feature {feature}", fontsize=10)
        axis.set_xlabel("state", fontsize=8)
        axis.set_ylabel(f"{what} ± 1 std (data units)", fontsize=8)
        axis.set_xticks(states, [str(k) for k in states], fontsize=7 if len(states) > 12 else 8)
        axis.grid(alpha=0.3)
    shown = "" if features == means.shape[1] else f", first {features} of {means.shape[1]} features"
    figure.suptitle(f"Emissions per state: {what} and standard deviation{shown}")
    return figure


def _short(name: str, most: int = 24) -> str:
    """A symbol as a bar's label: blank or unprintable names quoted (a space shows as ' ')."""
    if not name.strip() or not name.isprintable():
        name = repr(name)
    return name if len(name) <= most else name[: most - 1] + "…"


def _png(figure: Any, plt: Any) -> bytes:
    buffer = io.BytesIO()
    # Leave room for a figure title (about 0.5 inch) above the panels' own titles.
    top = 1 - 0.5 / figure.get_figheight() if figure._suptitle is not None else 1
    figure.tight_layout(rect=(0, 0, 1, top))
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- tables


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _tables(model: BaseHMM) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables by title: (header, rows of cells), plain text (escaped where shown)."""
    states = state_labels(model)
    transmat = np.asarray(model.transmat_)
    tables = {
        "Start probabilities": (
            ["state", "P(start)"],
            [[s, f"{p:.4f}"] for s, p in zip(states, model.startprob_, strict=True)],
        ),
        "Transition matrix (row: from, column: to)": (
            ["from \\ to", *[str(k) for k in range(len(states))]],
            [[s, *[f"{p:.4f}" for p in row]] for s, row in zip(states, transmat, strict=True)],
        ),
    }
    if hasattr(model, "emissionprob_"):
        tables["Most likely symbols per state"] = (
            ["state", "most likely symbols (probability)"],
            [
                [s, ", ".join(f"{name} ({p:.3f})" for name, p in top)]
                for s, top in zip(states, top_symbols(model), strict=True)
            ],
        )
        emissions = np.asarray(model.emissionprob_)
        tables["Emission probabilities (row: symbol, column: state)"] = (
            ["symbol", *states],
            [[name, *[f"{p:.4f}" for p in emissions[:, k]]] for k, name in enumerate(symbol_labels(model))],
        )
    moments = feature_moments(model)
    if moments is not None:
        what, means, spreads = moments
        tables[f"Emissions per state: {what} ± standard deviation"] = (
            ["state", *[f"feature {d}" for d in range(means.shape[1])]],
            [
                [s, *[f"{m:.4g} ± {v:.3g}" for m, v in zip(means[k], spreads[k], strict=True)]]
                for k, s in enumerate(states)
            ],
        )
    return tables


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _html_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<h2>{html.escape(title)}</h2>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: Any, spec: str = ".6f") -> str:
    return "" if value is None else format(value, spec)


def candidate_tables(
    records: list[dict[str, Any]], relabelling: Relabelling | None = None
) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables on candidate models (restarts, state-count sweeps) and state labels.

    ``Candidates``: every candidate of the last COMMIT (number of states, seed, warm or random
    start, status and why a stopped one stopped,
    log-likelihood, held-out log-likelihood, AIC, BIC), the best one marked; ``State
    labels``: the renumbering to the ``init_from`` reference (``relabelling``), with each state's
    drift. Empty for a training of one candidate without a reference.
    """
    last = records[-1]
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    if "candidates" in last:
        best = last.get("best_candidate", 0)
        tables["Candidates"] = (
            ["#", "states", "seed", "start", "status", "log-likelihood", "held-out", "AIC", "BIC"],
            [
                [
                    f"{entry['index']}{' (best)' if entry['index'] == best else ''}",
                    str(entry["n_components"]),
                    str(entry["seed"]),
                    "warm" if entry.get("warm_start") else "random",
                    entry["status"] + (f": {entry['stop_reason']}" if entry.get("stop_reason") else ""),
                    _number(entry["log_likelihood"]),
                    _number(entry["holdout_log_likelihood"]),
                    _number(entry["aic"], ".2f"),
                    _number(entry["bic"], ".2f"),
                ]
                for entry in last["candidates"]
            ],
        )
    if relabelling is not None:
        pin = records[0].get("init_from") or {}
        title = (
            f"State labels: new state i was state order[i], order = {relabelling.order} "
            f"(to match the model of training {pin.get('training_id')}, iteration {pin.get('iteration')})"
        )
        tables[title] = (
            ["state", "was", "reference state", "emission divergence (nats)", "transition change (L1)"],
            [
                [
                    str(row["state"]),
                    str(row["was"]),
                    "" if row["reference_state"] is None else str(row["reference_state"]),
                    _number(row["emission_divergence"], ".4g"),
                    _number(row["transition_change"], ".4g"),
                ]
                for row in relabelling.as_rows()
            ],
        )
    return tables


def _candidate_curves(plt: Any, records: list[dict[str, Any]]) -> Any:
    figure, axis = plt.subplots(figsize=(7, 3.8))
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
    axis.set_xlabel("parameters after k EM updates")
    axis.set_ylabel("log-likelihood (nats)")
    axis.set_title("EM log-likelihood per candidate")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return figure


_FIGURE_TITLES = {
    "log_likelihood.png": "Training: log-likelihood per observation and the gain of each update",
    "emissions.png": "What each state emits",
    "parameters.png": "Transition matrix",
    "candidates.png": "Log-likelihood of each candidate model",
}

_STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}"
    "td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}"
)


def _html(title: str, summary: str, figures: dict[str, bytes], tables: dict[str, Any], iterations: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(summary)}</p>",
    ]
    for name in _FIGURE_TITLES:
        if name in figures:
            data = base64.b64encode(figures[name]).decode("ascii")
            parts.append(f"<h2>{_FIGURE_TITLES[name]}</h2>")
            parts.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(_FIGURE_TITLES[name])}">')
    parts += [_html_table(name, *table) for name, table in tables.items()]
    parts.append(f"<h2>Iterations</h2>\n<pre>{html.escape(iterations)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_report(
    spec: TrainingSpec, records: list[dict[str, Any]], model: BaseHMM, relabelling: Relabelling | None = None
) -> dict[str, bytes]:
    """Files to publish under ``model/``: name -> bytes (model.npz, report.md/.json/.html, PNGs).

    ``relabelling``: how the states were renumbered to match a warm start's reference, if they were.
    """
    last = records[-1]
    figures = _figures(records, model)  # none without matplotlib (the report extra): then none is listed
    tables = {**candidate_tables(records, relabelling), **_tables(model)}
    _, per, gains = per_observation(records)
    summary: dict[str, Any] = {
        "spec": json.loads(spec.to_json()),
        "iterations": records,
        "final_iteration": last["iteration"],
        "converged": bool(last["converged"]),
        "startprob": model.startprob_.tolist(),
        "transmat": model.transmat_.tolist(),
        "log_likelihood_per_observation": per,
        "gain_per_observation": gains,
    }
    if relabelling is not None:
        summary["relabelling"] = relabelling.as_rows()
    if hasattr(model, "emissionprob_"):
        summary["symbols"] = symbol_labels(model)
        summary["emissionprob"] = np.asarray(model.emissionprob_).tolist()
        summary["top_symbols"] = [[list(pair) for pair in top] for top in top_symbols(model)]
    moments = feature_moments(model)
    if moments is not None:
        summary["emission_moments"] = {"kind": moments[0], "means": moments[1].tolist(), "stds": moments[2].tolist()}
    title = f"hmm-em training report: {spec.model}, {spec.n_components} states"
    description = (
        f"Model: {spec.model}, {spec.n_components} states; data: {spec.data}; tol {spec.tol}, "
        f"max_iter {spec.max_iter}, seed {spec.seed}. Final parameters: iteration {last['iteration']} "
        f"({'converged' if last['converged'] else 'not converged'})."
    )
    iterations = iteration_table(records)
    markdown = "\n\n".join(
        [
            f"# hmm-em training report\n\nModel: {spec.model}, {spec.n_components} states; data: `{spec.data}`; "
            f"tol {spec.tol}, max_iter {spec.max_iter}, seed {spec.seed}.",
            f"Final parameters: iteration {last['iteration']} "
            f"({'converged' if last['converged'] else 'not converged'}).",
            iterations,
            *[f"## {name}\n\n![{_FIGURE_TITLES[name]}]({name})" for name in _FIGURE_TITLES if name in figures],
            *[
                f"## {name}\n\n"
                + _markdown_table([_markdown_cell(h) for h in header], [[_markdown_cell(c) for c in r] for r in rows])
                for name, (header, rows) in tables.items()
            ],
            "Files: `model.npz` (load with `hmm.load`), `report.json`, `report.html`"
            + "".join(f", `{name}`" for name in figures)
            + ".",
        ]
    )
    files = {
        "model.npz": persistence.dumps(model),
        "report.json": json.dumps(summary, indent=2, sort_keys=True).encode(),
        "report.md": (markdown + "\n").encode(),
        "report.html": _html(title, description, figures, tables, iterations).encode(),
    }
    files.update(figures)
    return files
