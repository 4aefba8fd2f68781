"""A new local store is a copy of an empty one MLflow built, cached per MLflow version: MLflow's own
build runs every schema migration (3.6 s a store, measured), a copy opens in a tenth of a second."""

import sqlite3

import mlflow
from mlflow.tracking import MlflowClient

from ablation.core.cache import cache_dir
from ablation.tracking import create_store


def versions(db) -> list:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT version_num FROM alembic_version").fetchall()


def test_a_new_store_is_a_copy_of_the_cached_template_and_works_as_mlflows_own(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    create_store(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    template = cache_dir() / "stores" / f"mlflow-{mlflow.__version__}.db"
    assert template.is_file()
    create_store(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    # MLflow's own build of a store, for comparison: the same schema version.
    MlflowClient(f"sqlite:///{tmp_path / 'own.db'}").search_experiments()
    assert versions(tmp_path / "b" / "mlflow.db") == versions(tmp_path / "own.db")
    client = MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    # The Default experiment's artifacts where MLflow would have put them, not where the template was built.
    assert client.get_experiment("0").artifact_location == str(tmp_path / "mlruns" / "0")
    run = client.create_run(client.create_experiment("s"))
    client.log_metric(run.info.run_id, "m", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 0.5}
    assert not list(tmp_path.glob("*/*.part"))


def test_a_template_that_is_not_a_store_is_built_again_and_the_store_made_anyway(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    template = cache_dir() / "stores" / f"mlflow-{mlflow.__version__}.db"
    template.parent.mkdir(parents=True)
    template.write_bytes(b"not a database")
    create_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # MLflow built it
    assert not template.exists()  # and the next store builds a good template
    create_store(f"sqlite:///{tmp_path / 'next.db'}")
    assert versions(template) == versions(tmp_path / "mlflow.db")
