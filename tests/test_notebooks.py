"""The notebooks run top to bottom without errors (their own assert cells check the results), and the
committed copies carry their outputs, so GitHub shows the answers and the plots."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
QUICKSTART = NOTEBOOKS / "01_quickstart.ipynb"
PERSONALIZATION = NOTEBOOKS / "02_personalization.ipynb"
CELL_TIMEOUT_S = 1800  # a busy 2-core CPU: one end_session cell can take minutes


def _read(path: Path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(str(path), as_version=4)


def _errors(nb) -> list[str]:
    return [f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def _execute(path: Path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = _read(path)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as e:  # an assert cell failed: show which, without the kernel's colour codes
        pytest.fail(f"{path.name} failed:\n{str(e)[-3000:]}")
    assert not _errors(nb)
    return nb


def _text(nb, streams=("stdout",)) -> str:
    """The notebook's outputs as text: printed streams, and each result's markdown view (else its plain one)."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "stream":
                out.append(o.get("text", "") if o.get("name", "stdout") in streams else "")
            else:
                data = o.get("data", {})
                out.append(str(data.get("text/markdown", data.get("text/plain", ""))))
    return "\n".join(out)


@pytest.mark.parametrize("path", [QUICKSTART, PERSONALIZATION], ids=lambda p: p.stem)
def test_committed_notebook_has_outputs(path):
    """Committed executed: every code cell ran, in order, with no error output."""
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    counts = [c.get("execution_count") for c in code]
    assert all(counts), f"{path.name}: cells without outputs/execution count — commit the executed notebook"
    assert counts == sorted(counts), f"{path.name}: cells were not run top to bottom"
    assert not _errors(nb)


@pytest.mark.parametrize("path", [QUICKSTART, PERSONALIZATION], ids=lambda p: p.stem)
def test_committed_notebook_has_no_widget_warning(path):
    """tqdm's "IProgress not found" (a kernel without ipywidgets) is silenced by importing asls_mlx."""
    assert "IProgress" not in _text(_read(path), streams=("stdout", "stderr"))


def test_committed_quickstart_shows_a_committed_adapter_and_the_answer_it_changed():
    text = _text(_read(QUICKSTART))
    assert "committed: True" in text and "answered with adapter 1" in text
    before = text.split("without the adapter:")[1].split("with adapter v1:")[0].strip()
    after = text.split("with adapter v1:")[1].split("\n\n")[0].strip()
    assert before and after and before != after
    assert "the profile mid-session: Keep answers short" in text  # before the session ended


def test_committed_personalization_shows_plots():
    nb = _read(PERSONALIZATION)
    pngs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3  # satisfaction per session, answer lengths, training loss


@pytest.mark.e2e
def test_quickstart_runs(default_model_dir):
    nb = _execute(QUICKSTART)
    text = _text(nb)
    from asls_mlx.profiling.profile import PHRASES

    shown = [p.split("{")[0].strip() for p in PHRASES.values() if p.split("{")[0].strip()]
    # the profile cell ran: its render, or the note that this session expressed no preference (a profile claims
    # only what the user expressed; the notebook's edit replaces an answer rather than shortening it)
    assert "session" in text and (any(s in text for s in shown) or "(nothing learnt yet)" in text)
    assert "committed: True" in text and "answered with adapter 1" in text


@pytest.mark.e2e
def test_personalization_runs(default_model_dir):
    nb = _execute(PERSONALIZATION)
    text = _text(nb)
    assert "held-out satisfaction" in text and "total run time" in text
