"""DPO reference log-probs are computed once per pair, stored with it, reused by later updates, and forgotten with it."""

import asls_mlx  # noqa: F401
import pytest

from adaptation_fixtures import TOPICS, fresh_model, short_pairs
from asls_mlx.adaptation import train_data, validation
from asls_mlx.adaptation.batching import encode_pairs
from asls_mlx.adaptation.logprobs import reference_logps
from asls_mlx.adaptation.config import LearningConfig
from asls_mlx.adaptation.update import UpdateTarget, update_adapter
from asls_mlx.adaptation.versions import AdapterRepo
from asls_mlx.store import open_store

MODEL_ID = "tiny@test"


def _counting(monkeypatch) -> list[int]:
    """Record how many pairs each reference pass had to compute (not found in its cache)."""
    computed: list[int] = []

    def counted(model, pairs, cache=None, *a, **kw):
        computed.append(len({p.key for p in pairs if cache is None or p.key not in cache}))
        return reference_logps(model, pairs, cache, *a, **kw)

    monkeypatch.setattr(train_data, "reference_logps", counted)
    monkeypatch.setattr(validation, "reference_logps", counted)
    return computed


def _update(store, uid, model, tok, repo):
    return update_adapter(UpdateTarget(store, uid, model, tok, repo, MODEL_ID),
                          LearningConfig(max_steps=2, time_limit_s=1e9, drift_adaptation=False, replay_pool=64))


def test_reference_logps_are_stored_reused_and_forgotten(tiny_model_dir, tmp_path, monkeypatch):
    model, tok = fresh_model(tiny_model_dir, config=None)
    store = open_store(tmp_path / "asls.db")
    uid = store.get_or_create_user("ref").id
    repo = AdapterRepo(tmp_path / "adapters")
    first, val = short_pairs(TOPICS[:6]), short_pairs(TOPICS[10:], split="val")
    store.add_pairs(uid, first + val)
    computed = _counting(monkeypatch)

    _update(store, uid, model, tok, repo)
    stored = store.reference_logps(uid, MODEL_ID)
    assert len(stored) == len(first) + len(val) and sum(computed) == len(first) + len(val)
    # the stored numbers are the base model's (adapter off) log-probs of those very token ids
    fresh = reference_logps(fresh_model(tiny_model_dir, config=None)[0], encode_pairs(tok, first + val, 256))
    assert set(fresh) == set(stored)
    assert all(abs(fresh[k][0] - stored[k][0]) < 1e-4 and abs(fresh[k][1] - stored[k][1]) < 1e-4 for k in fresh)
    assert not store.reference_logps(uid, "another-model")  # keyed by the base model

    # the next update computes the new pairs only: replayed and held-out pairs come from the store
    second = short_pairs(TOPICS[6:10])
    store.add_pairs(uid, second)
    computed.clear()
    _update(store, uid, model, tok, repo)
    assert sum(computed) == len(second)
    assert len(store.reference_logps(uid, MODEL_ID)) == len(first) + len(val) + len(second)

    store.forget("ref", everything=True)
    assert store.execute("SELECT COUNT(*) FROM reference_logps").fetchone()[0] == 0
    store.close()


def test_held_out_pairs_that_add_a_line_are_not_computed_again(tiny_model_dir, tmp_path, monkeypatch):
    """With ``sft_on_change`` a pair whose chosen answer adds one line trains with the shared head in its context,
    while the held-out check reads it whole: the reference log-probs of both readings are stored, so the next update
    computes its new pairs only."""
    from asls_mlx.store import PreferencePair

    model, tok = fresh_model(tiny_model_dir, config=None)
    store = open_store(tmp_path / "asls.db")
    uid = store.get_or_create_user("line").id
    repo = AdapterRepo(tmp_path / "adapters")
    val = [PreferencePair(f"Tell me about {t}.", f"About {t}: fine.\nWant to know more?", f"About {t}: fine.", "edit", 1.0,
                          split="val") for t in TOPICS[10:13]]
    store.add_pairs(uid, short_pairs(TOPICS[:4]) + val)
    computed = _counting(monkeypatch)
    _update(store, uid, model, tok, repo)
    second = short_pairs(TOPICS[4:8])
    store.add_pairs(uid, second)
    computed.clear()
    _update(store, uid, model, tok, repo)
    assert sum(computed) == len(second)
    store.close()


def test_the_active_versions_held_out_log_probs_are_not_computed_again(tiny_model_dir, tmp_path, monkeypatch):
    """A version keeps its held-out pairs' policy log-probs from its own gate; the next update's held-out metrics
    before training read them and compute only the pairs that version never saw, with the same margins."""
    from asls_mlx.adaptation.lora import set_lora_weights

    model, tok = fresh_model(tiny_model_dir, config=None)
    store = open_store(tmp_path / "asls.db")
    uid = store.get_or_create_user("known").id
    repo = AdapterRepo(tmp_path / "adapters")
    old_val, new_val = short_pairs(TOPICS[10:], split="val"), short_pairs(["maple trees", "a violin"], split="val")
    store.add_pairs(uid, short_pairs(TOPICS[:4]) + old_val)
    first = _update(store, uid, model, tok, repo)
    assert first.committed and len(store.active_adapter(uid).metrics["val_after"]["logps"]) == len(old_val), first
    store.add_pairs(uid, short_pairs(TOPICS[4:8]) + new_val)
    policy_rows: list[int] = []
    counted = validation.pairs_logps
    monkeypatch.setattr(validation, "pairs_logps", lambda m, triples, *a: (policy_rows.append(len(triples)),
                                                                           counted(m, triples, *a))[1])
    second = _update(store, uid, model, tok, repo)
    assert policy_rows[0] == len(new_val)  # before training: only the pairs v1 never answered
    assert second.before["n"] == len(old_val) + len(new_val) and "logps" not in second.before
    set_lora_weights(model, repo.load(first.version)[1])  # v1's weights, every pair computed afresh
    fresh = validation.preference_metrics(model, tok, store.pairs(uid, split="val"), {})
    assert second.before["margins"] == pytest.approx(fresh["margins"], abs=1e-4)
    assert any(abs(m) > 1e-3 for m in fresh["margins"])  # v1 moved them: the margins compared are not all zero
    store.close()


def test_session_update_caps_passes_over_its_pairs(tiny_model_dir, tmp_path):
    model, tok = fresh_model(tiny_model_dir, config=None)
    store = open_store(tmp_path / "asls.db")
    uid = store.get_or_create_user("epochs").id
    store.add_pairs(uid, short_pairs(TOPICS[:3]))  # one batch holds all three
    options = LearningConfig(max_steps=10, time_limit_s=1e9, drift_adaptation=False, max_epochs=2.0)
    report = update_adapter(UpdateTarget(store, uid, model, tok, AdapterRepo(tmp_path / "adapters"), MODEL_ID), options)
    assert report.steps == 2, report
    store.close()


def test_a_continued_adapter_trains_at_the_decayed_lr_with_fresh_moments(tiny_model_dir, tmp_path, monkeypatch):
    """The second update continues v1: its lr falls with v1's steps (``lr_decay_steps``) and, with
    ``resume_moments`` off, AdamW gets v1's step count but not its moments."""
    from asls_mlx.adaptation import trainer, update
    from asls_mlx.adaptation.config import adapt_schedule

    model, tok = fresh_model(tiny_model_dir, config=None)
    store = open_store(tmp_path / "asls.db")
    uid = store.get_or_create_user("decay").id
    repo = AdapterRepo(tmp_path / "adapters")
    config = LearningConfig(max_steps=2, time_limit_s=1e9, drift_adaptation=False, lr_decay_steps=2.0,
                            resume_moments=False)
    built = []
    monkeypatch.setattr(update, "train_on_pairs", lambda *a, **kw: (built.append(kw["optimizer_state"]),
                                                                     trainer.train_on_pairs(*a, **kw))[1])
    store.add_pairs(uid, short_pairs(TOPICS[:4]))
    first = update_adapter(UpdateTarget(store, uid, model, tok, repo, MODEL_ID), config)
    assert first.committed and first.steps == 2, first
    store.add_pairs(uid, short_pairs(TOPICS[4:8]))
    update_adapter(UpdateTarget(store, uid, model, tok, repo, MODEL_ID), config)
    lrs = [run.metrics["lr"] for run in store.training_runs(uid)]
    scheduled = adapt_schedule(4, 0.0, config.base_lr)[1]
    assert sorted(lrs, reverse=True) == pytest.approx([scheduled, scheduled * 0.5 ** 0.5])  # 2 prior steps, S = 2
    assert built[0] is None and int(built[1]["step"].item()) == 2 and len(built[1]) > 1  # v1's saved state
    store.close()
