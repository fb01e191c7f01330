"""The published report: markdown, JSON and a self-contained HTML page whose images decode and
whose text names every state and symbol, at the sizes people train (20 states, 200 symbols), for
every model kind."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from typing import Any

import numpy as np
import pytest

import hmm
from hmm.training.report import build_report, top_symbols
from hmm.training.spec import TrainingSpec

IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def records(n_iterations: int = 8, n_observations: int = 5000) -> list[dict[str, Any]]:
    """COMMIT-like records: log-likelihood rising with shrinking gains (and one loss)."""
    result: list[dict[str, Any]] = [{"iteration": 0, "converged": False, "log_likelihood": None, "improvement": None}]
    value = -20000.0
    for k in range(1, n_iterations + 1):
        improvement = None if k == 1 else (-5.0 if k == 4 else 4000.0 / 3**k)
        value += improvement or 0.0
        result.append(
            {
                "iteration": k,
                "log_likelihood": value,
                "improvement": improvement,
                "converged": k == n_iterations,
                "n_observations": n_observations,
                "timings": {"estep_seconds": 0.1},
            }
        )
    return result


def spec(model: str, n_components: int) -> TrainingSpec:
    return TrainingSpec.from_dict({"model": model, "n_components": n_components, "data": "file:///data"})


def decode_image(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, decoded by PIL if installed, else by matplotlib."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size
    except ImportError:
        import matplotlib.image

        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        return pixels.shape[1], pixels.shape[0]


def html_images(page: str) -> list[bytes]:
    return [base64.b64decode(data, validate=True) for data in IMAGE.findall(page)]


def named_model(n_states: int = 20, n_symbols: int = 200) -> hmm.CategoricalHMM:
    rng = np.random.default_rng(0)
    symbols = [f"w{k:03d}&<{k}>" for k in range(n_symbols)]  # names that need escaping in HTML
    model = hmm.CategoricalHMM(n_states, symbols=symbols)
    model.startprob_ = rng.dirichlet(np.ones(n_states))
    model.transmat_ = rng.dirichlet(np.ones(n_states), size=n_states)
    model.emissionprob_ = rng.dirichlet(np.full(n_symbols, 0.3), size=n_states)
    model.check_parameters()
    return model


def test_the_html_report_at_20_states_and_200_symbols() -> None:
    pytest.importorskip("matplotlib")
    model = named_model()
    files = build_report(spec("categorical", 20), records(), model)
    page = files["report.html"].decode()
    assert page.startswith("<!DOCTYPE html>") and 'src="http' not in page  # self-contained
    images = html_images(page)
    assert len(images) == 3 == len([name for name in files if name.endswith(".png")])
    for data in images:
        width, height = decode_image(data)
        assert width >= 400 and height >= 300
    assert {data for data in images} == {files[name] for name in files if name.endswith(".png")}
    for state in range(20):
        assert f"state {state}" in page
    for symbol in model.symbols:
        assert html.escape(symbol) in page, symbol
    # Each state's most likely symbols, in order, as the bars show them.
    table = page[page.index("Most likely symbols per state") :]
    for state, top in enumerate(top_symbols(model)):
        row = re.search(rf"<td>state {state}</td><td>([^<]*)</td>", table)
        assert row is not None
        assert row.group(1).startswith(", ".join(f"{html.escape(name)} ({p:.3f})" for name, p in top[:2]))


def test_the_markdown_and_json_name_the_symbols() -> None:
    model = named_model(3, 12)
    files = build_report(spec("categorical", 3), records(), model)
    summary = json.loads(files["report.json"])
    assert summary["symbols"] == model.symbols
    np.testing.assert_array_equal(summary["emissionprob"], model.emissionprob_)
    assert summary["top_symbols"][0][0] == list(top_symbols(model)[0][0])
    assert summary["log_likelihood_per_observation"][0] == pytest.approx(-20000.0 / 5000)
    gains = [None, pytest.approx(4000.0 / 9 / 5000), pytest.approx(4000.0 / 27 / 5000), -5.0 / 5000]
    assert summary["gain_per_observation"][:4] == gains
    markdown = files["report.md"].decode()
    for symbol in model.symbols:
        assert symbol.replace("|", "\\|") in markdown
    assert "`report.html`" in markdown


def fitted(kind: str) -> hmm.BaseHMM:
    rng = np.random.RandomState(0)
    if kind == "gaussian":
        return hmm.GaussianHMM(3, covariance_type="full", n_iter=3, random_state=0).fit(rng.normal(size=(200, 2)))
    if kind == "poisson":
        return hmm.PoissonHMM(3, n_iter=3, random_state=0).fit(rng.poisson([3.0, 8.0], size=(200, 2)))
    covariance_type = kind.split("-")[1]
    return hmm.GMMHMM(3, n_mix=2, covariance_type=covariance_type, n_iter=3, random_state=0).fit(
        rng.normal(size=(300, 2))
    )


@pytest.mark.parametrize("kind", ["gaussian", "poisson", "gmm-diag", "gmm-full", "gmm-spherical", "gmm-tied"])
def test_means_and_spreads_per_state(kind: str) -> None:
    pytest.importorskip("matplotlib")
    model = fitted(kind)
    files = build_report(spec(kind.split("-")[0], 3), records(), model)
    summary = json.loads(files["report.json"])
    moments = summary["emission_moments"]
    assert np.shape(moments["means"]) == np.shape(moments["stds"]) == (3, 2)
    assert np.all(np.asarray(moments["stds"]) > 0)
    if kind == "poisson":
        np.testing.assert_allclose(moments["means"], model.lambdas_)
    elif kind == "gaussian":
        np.testing.assert_allclose(moments["stds"], np.sqrt(np.diagonal(model.covars_, axis1=1, axis2=2)))
    else:  # the mixture's mean
        np.testing.assert_allclose(moments["means"], np.einsum("km,kmd->kd", model.weights_, model.means_))
    page = files["report.html"].decode()
    for data in html_images(page):
        decode_image(data)
    assert len(html_images(page)) == 3
    assert "feature 1" in page and "state 2" in page
