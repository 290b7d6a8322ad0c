"""Optuna on a real PostgreSQL server: the storage many machines share."""

import optuna
import pytest
from postgres import PostgresServer
from test_tune import run_workers


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


def test_parallel_workers_on_postgresql(tmp_path, fit_args, postgres):
    study = run_workers(tmp_path, fit_args, postgres.url, workers=2, trials=1)
    assert sorted(t.number for t in study.trials) == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
