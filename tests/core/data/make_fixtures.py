"""Write the model-file fixtures of one hmm-em checkout: one fitted model of each class.

Run it with the Python of any environment that has hmm-em's dependencies, against the checkout
whose model files are to be kept (its ``hmm`` is imported, not the installed one)::

    git worktree add /tmp/old <commit>
    python tests/core/data/make_fixtures.py --checkout /tmp/old --out tests/core/data/<commit>

It writes ``<name>.npz`` (``model.save``) for each model below and ``expected.json``: the data,
what the old code computed on it (fitted parameters, ``score``, ``predict``) and the commit.
``tests/core/test_old_model_files.py`` loads every fixture with today's code and compares.
Only public API that every release since the first model file format has (the classes,
``fit``, ``save``, ``score``, ``predict``) is used, so the script runs against any checkout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

#: Sequence lengths of every model's data: small, so each file stays a few KB.
LENGTHS = [20, 7, 13]


def data() -> dict[str, np.ndarray]:
    """The training data of each kind of model, the same in every checkout."""
    rs = np.random.RandomState(12)
    n = sum(LENGTHS)
    return {
        "categorical": rs.choice(3, p=[0.5, 0.3, 0.2], size=(n, 1)),
        "continuous": np.concatenate(
            [rs.normal(0.0, 1.0, size=(n // 2, 2)), rs.normal(3.0, 0.5, size=(n - n // 2, 2))]
        ),
        "counts": rs.poisson([4.0, 1.0], size=(n, 2)),
    }


def models(hmm):
    """(file name, model, data kind) of every model class and covariance type."""
    fixtures = [
        ("categorical", hmm.CategoricalHMM(2, n_iter=5, random_state=1, emissionprob_prior=1.5), "categorical"),
        ("poisson", hmm.PoissonHMM(2, n_iter=5, random_state=1, lambdas_prior=1.0), "counts"),
    ]
    for covariance_type in ("spherical", "diag", "full", "tied"):
        fixtures.append(
            (
                f"gaussian_{covariance_type}",
                hmm.GaussianHMM(2, covariance_type=covariance_type, n_iter=5, random_state=1),
                "continuous",
            )
        )
    fixtures.append(("gmm", hmm.GMMHMM(2, n_mix=2, covariance_type="diag", n_iter=5, random_state=1), "continuous"))
    return fixtures


def fitted(model) -> dict[str, list]:
    """The fitted parameters by their public names (``covars_`` as the model returns it)."""
    names = ["startprob_", "transmat_"]
    names += {
        "CategoricalHMM": ["emissionprob_"],
        "PoissonHMM": ["lambdas_"],
        "GaussianHMM": ["means_", "covars_"],
        "GMMHMM": ["weights_", "means_", "covars_"],
    }[type(model).__name__]
    return {name: np.asarray(getattr(model, name)).tolist() for name in names}


def git(checkout: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


def scm_version(checkout: Path) -> str:
    """The version setuptools-scm gives a commit of this repository: ``<tag>.devN+g<hash>`` after
    the last tag vX.Y (``0.1.devN+g<hash>`` before the first, N counting every commit)."""
    short = git(checkout, "rev-parse", "--short=9", "HEAD")
    try:
        tag = git(checkout, "describe", "--tags", "--abbrev=0", "--match", "v*")
    except subprocess.CalledProcessError:
        return f"0.1.dev{git(checkout, 'rev-list', '--count', 'HEAD')}+g{short}"
    major, minor = tag.lstrip("v").split(".")[:2]
    distance = git(checkout, "rev-list", "--count", f"{tag}..HEAD")
    return f"{major}.{int(minor) + 1}.dev{distance}+g{short}" if distance != "0" else tag.lstrip("v")


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--checkout", type=Path, required=True, help="the hmm-em checkout whose hmm to run")
    arguments.add_argument("--out", type=Path, required=True, help="directory of the fixtures")
    args = arguments.parse_args()
    checkout = args.checkout.resolve()
    commit = git(checkout, "rev-parse", "HEAD")
    if not (checkout / "hmm" / "_version.py").exists():
        # A plain checkout has no hmm/_version.py (setuptools-scm writes it at install), and the
        # installed hmm-em's would be found instead: the files would name the wrong version.
        version = types.ModuleType("hmm._version")
        version.__version__ = scm_version(checkout)  # type: ignore[attr-defined]
        sys.modules["hmm._version"] = version
    sys.path.insert(0, str(checkout))
    import hmm

    if Path(hmm.__file__).resolve().parents[1] != checkout:
        raise SystemExit(f"imported {hmm.__file__}, not the checkout's hmm: install hmm-em non-editable or not at all")
    args.out.mkdir(parents=True, exist_ok=True)
    sets = data()
    expected: dict = {
        "commit": commit,
        "hmm_em_version": hmm.__version__,
        "lengths": LENGTHS,
        "data": {k: v.tolist() for k, v in sets.items()},
    }
    expected["models"] = {}
    for name, model, kind in models(hmm):
        X = sets[kind]
        model.fit(X, LENGTHS)
        model.save(args.out / f"{name}.npz")
        expected["models"][name] = {
            "class": type(model).__name__,
            "data": kind,
            "params": fitted(model),
            "score": float(model.score(X, LENGTHS)),
            "predict": model.predict(X, LENGTHS).tolist(),
        }
    # repr-exact floats: json writes the shortest repr, which reads back to the same double.
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{commit}: wrote {len(expected['models'])} models to {args.out}")


if __name__ == "__main__":
    main()
