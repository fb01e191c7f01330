import pytest

from hmm.core.convergence import ConvergenceMonitor, has_converged


@pytest.mark.parametrize(
    ("history", "tol", "n_iter", "expected"),
    [
        ([], 0.01, 10, False),
        ([-100.0], 0.01, 10, False),
        ([-100.0, -50.0], 0.01, 10, False),
        ([-100.0, -99.995], 0.01, 10, True),
        ([-100.0, -101.0], 0.01, 10, True),  # a decrease also stops, as in hmmlearn
        ([-100.0, -50.0, -10.0], 0.01, 3, True),
    ],
)
def test_has_converged_is_hmmlearns_rule(history, tol, n_iter, expected):
    assert has_converged(history, tol, n_iter) is expected
    monitor = ConvergenceMonitor(tol, n_iter, verbose=False)
    for value in history:
        monitor.report(value)
    if history:
        assert monitor.converged is expected


def test_verbose_report_prints_iteration_and_delta(capsys):
    monitor = ConvergenceMonitor(0.01, 5, verbose=True)
    monitor.report(-10.0, seconds=0.5)
    monitor.report(-8.0, seconds=0.25)
    err = capsys.readouterr().err.splitlines()
    assert err[0].split()[0] == "1" and "nan" in err[0]
    assert err[1].split() == ["2", "-8.00000000", "+2.00000000"]
    assert monitor.seconds == [0.5, 0.25]
    assert list(monitor.history) == [-10.0, -8.0] and monitor.iter == 2
