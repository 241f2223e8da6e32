"""The eval runner wired to the real Assistant on a tiny random model: 1 persona, 2 arms, 1 session."""

import json

from asls_mlx.evaluation import run_eval
from asls_mlx.evaluation.metrics import answers_template_share


def test_run_eval_on_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    result = run_eval(arms=["base", "asls"], personas=["concise"], sessions=1, turns=2, heldout=2, seed=0,
                      model=str(tiny_model_dir), out_dir=out, max_tokens=12, train_budget_s=5.0,
                      correctness=5)
    data = json.loads((out / "results.json").read_text())
    assert [(r["persona"], r["arm"]) for r in data["runs"]] == [("concise", "base"), ("concise", "asls")]
    asls = result.run("concise", "asls")
    assert len(asls["sessions"]) == 2 and len(asls["heldout_prompts"]) == 2
    assert len(asls["sessions"][1]["chat"]["turns"]) == 2
    assert all(isinstance(a, str) for s in asls["sessions"] for a in s["answers"])
    # a random model babbles: the quality guard must fail most answers, and they must score 0
    for s in asls["sessions"]:
        h = s["heldout"]
        assert 0.0 <= h["satisfaction"] <= 1.0 and 0.0 <= h["quality_pass"] <= 1.0
        if h["quality_pass"] == 0.0:
            assert h["satisfaction"] == 0.0
    ret = asls["retention"]
    assert ret["ppl"] > 1.0 and ret["base_ppl"] > 1.0 and ret["ratio"] > 0
    training = asls["sessions"][1]["training"]  # the real update report: its decision and why
    assert training["committed"] in (True, False) and isinstance(training["reason"], str)
    assert isinstance(training["steps"], int) and "before" in training and "profile_fit" in training
    assert isinstance(training["timings"], dict), training  # where an update's time went (empty: nothing to train)
    assert not training["steps"] or (training["timings"]["steps"] > 0 and "prepare" in training["timings"])
    # correctness kept: the real Assistant's answer_many on 5 fixed questions, per arm
    base = result.run("concise", "base")
    for run in (base, asls):
        c = run["correctness"]
        assert c["n"] == 5 and len(c["answers"]) == 5 and all(isinstance(a, str) for a in c["answers"])
        assert 0.0 <= c["accuracy"] <= 1.0
    if base["correctness"]["accuracy"] > 0:
        assert asls["correctness"]["kept_vs_base"] == asls["correctness"]["accuracy"] / base["correctness"]["accuracy"]
    else:  # nothing right to keep: no ratio
        assert asls["correctness"]["kept_vs_base"] != asls["correctness"]["kept_vs_base"]
    last = data["runs"][1]["sessions"][-1]["heldout"]
    assert last["template_share"] == answers_template_share(asls["sessions"][-1]["answers"])
    assert 0.0 <= last["template_share"] <= 1.0 and 0.0 <= last["leak_rate"] <= 1.0
    md = (out / "results.md").read_text()
    assert "Kept vs base" in md
    assert "| base |" in md and "| asls |" in md
    assert (out / "home" / "asls.db").exists() or any((out / "home").iterdir())


def test_parts_in_parallel_processes_give_the_single_process_runs(tiny_model_dir, tmp_path):
    """``jobs=2``: each persona x seed in its own process and directory, combined in the single-process order;
    the same users, prompts and answers (a tiny model's greedy answers do not depend on the BLAS threads)."""
    from asls_mlx.evaluation.parallel import part_dir

    common = dict(arms=["base", "profile_prompt"], personas=["concise", "follow_up"], sessions=1, turns=1, heldout=2,
                  seeds=[0, 1], model=str(tiny_model_dir), max_tokens=8, correctness=0)
    seen = []
    together = run_eval(**common, out_dir=tmp_path / "parallel", jobs=2, progress=seen.append)
    alone = run_eval(**common, out_dir=tmp_path / "single", jobs=1)

    def key(run):
        return run["persona"], run["arm"], run["seed"]

    assert [key(r) for r in together.runs] == [key(r) for r in alone.runs]
    assert len(together.runs) == 8 and together.config["personas"] == ["concise", "follow_up"]
    for a, b in zip(together.runs, alone.runs):
        assert a["heldout_prompts"] == b["heldout_prompts"]
        assert [s["answers"] for s in a["sessions"]] == [s["answers"] for s in b["sessions"]]
    assert json.loads((tmp_path / "parallel" / "results.json").read_text())["config"]["seeds"] == [0, 1]
    assert (part_dir(tmp_path / "parallel", "follow_up", 1) / "results.json").exists()
    assert any(m.startswith("concise s0: ") for m in seen) and "follow_up s1: done" in seen


def test_a_failing_part_stops_the_parallel_eval_with_its_message(tmp_path):
    import pytest

    from asls_mlx.errors import ASLSError

    with pytest.raises(ASLSError, match=r"(?s)part (concise|follow_up) s0 failed \(exit 1\):\n.*error: .*no-such-model"):
        run_eval(arms=["base"], personas=["concise", "follow_up"], sessions=1, turns=1, heldout=1, seeds=[0],
                 model=str(tmp_path / "no-such-model"), out_dir=tmp_path / "out", jobs=2, correctness=0)


def test_default_jobs_is_one_per_core_within_memory(monkeypatch):
    import os

    from asls_mlx.evaluation import parallel

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096}.get(name, (10 << 30) // 4096))
    assert parallel.default_jobs(1) == 1 and parallel.default_jobs(2) == 2
    assert parallel.default_jobs(30) == 3  # 4 cores, but 10 GB hold 3 parts of PART_MEMORY_BYTES
