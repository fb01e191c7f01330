"""Numba's cache of the kernels never outlives their sources (hmm/core/kernels/cache.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import hmm
from hmm.core.kernels import LANES
from hmm.core.kernels.cache import STAMP_NAME, clear_stale_caches

PACKAGE = Path(hmm.__file__).parent


def compiled_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "__pycache__").glob("*.nb[ic]"))


def test_cache_files_go_when_a_source_changes_and_stay_while_none_does(tmp_path):
    (tmp_path / "lanes.py").write_text("LANES = 8\n")
    (tmp_path / "forward.py").write_text("def forward(): ...\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    for name in ("forward.forward-1.py311.nbi", "forward.forward-1.py311.1.nbc", "forward.cpython-311.pyc"):
        (cache / name).write_bytes(b"compiled before any stamp")

    assert clear_stale_caches(tmp_path) is True  # no stamp: compiled from unknown sources
    assert compiled_files(tmp_path) == [] and (cache / "forward.cpython-311.pyc").exists()
    assert (cache / STAMP_NAME).exists()

    (cache / "forward.forward-1.py311.nbi").write_bytes(b"compiled from these sources")
    assert clear_stale_caches(tmp_path) is False
    assert compiled_files(tmp_path) == ["forward.forward-1.py311.nbi"]

    (tmp_path / "lanes.py").write_text("LANES = 16\n")  # only the file the others inline changes
    assert clear_stale_caches(tmp_path) is True
    assert compiled_files(tmp_path) == []


def test_an_unwritable_cache_folder_is_left_to_numba(tmp_path):
    (tmp_path / "lanes.py").write_text("LANES = 8\n")
    (tmp_path / "__pycache__").write_text("a file where the folder would be")
    assert clear_stale_caches(tmp_path) is False


SCORE = """
import numpy as np, hmm
from hmm.core.kernels import LANES
rng = np.random.default_rng(0)
model = hmm.CategoricalHMM(3, n_features=4, n_iter=3, random_state=0)
X = rng.integers(0, 4, size=(600, 1))
model.fit(X, [30] * 20)
print(LANES, repr(model.score(X, [30] * 20)))
"""


def run_copy(copy: Path) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(copy.parent)}
    done = subprocess.run([sys.executable, "-c", SCORE], env=env, cwd=copy.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lanes, score = done.stdout.split()
    return int(lanes), float(score)


def test_a_checkout_that_changes_only_lanes_py_never_runs_the_old_machine_code(tmp_path):
    """The defect it guards against: forward.py's cached code for the old lane count, run on new buffers."""
    copy = tmp_path / "hmm"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    lanes_before, score_before = run_copy(copy)
    assert lanes_before == LANES
    kernels = copy / "core" / "kernels"

    def forward_cache() -> set[tuple[str, int]]:
        return {(p.name, p.stat().st_mtime_ns) for p in (kernels / "__pycache__").glob("forward.*.nb[ic]")}

    before = forward_cache()
    assert before  # score() compiled forward.py's kernels into the cache

    # The other lane count, as a checkout of another revision of lanes.py would bring; forward.py unchanged.
    lanes_py = kernels / "lanes.py"
    other = 8 if LANES == 16 else 16
    lanes_py.write_text(lanes_py.read_text().replace("LANES = _host_lanes()", f"LANES = {other}"))
    lanes_after, score_after = run_copy(copy)
    assert lanes_after == other
    # forward.py's kernels were compiled again, not loaded from the files compiled with the old lanes.py.
    assert forward_cache() and not (forward_cache() & before)
    # Sums in another order: equal to rounding, where stale code gives NaN or garbage.
    assert abs(score_after - score_before) <= 1e-9 * abs(score_before)
