"""Export -> import round trip, all-or-nothing import, and forget (rows, derived rows, adapters, bytes)."""

import json
import os

import pytest

from asls_mlx.errors import ASLSError
from asls_mlx.profiling import PreferencePair
from asls_mlx.store import open_store

SECRET_A = "my secret diagnosis zebrafish-4417"
SECRET_B = "the launch code is marmalade-9931"


def _populate(s, name="ann"):
    """Two sessions with every kind of row; returns (user, session ids, message ids)."""
    u = s.get_or_create_user(name)
    s1 = s.start_session(u.id, started_at=1000.0)
    q1 = s.add_message(s1, "user", SECRET_A, created_at=1001)
    a1 = s.add_message(s1, "assistant", "Answer one, long and winding.", parent_id=q1, created_at=1002)
    a1b = s.add_alternative(a1, "Answer one, short.", created_at=1003)
    s.set_edit(a1b, "Short.", created_at=1004)
    s.add_feedback(a1b, "thumbs_up", {"via": "/good"}, 0.9, created_at=1005)
    s.end_session(s1, ended_at=1010)
    s.mark_session_processed(s1)
    s.save_profile(u.id, {"length": {"value": 80, "confidence": 0.3}}, session_id=s1, created_at=1011)
    s2 = s.start_session(u.id, started_at=2000.0)
    q2 = s.add_message(s2, "user", SECRET_B, created_at=2001)
    a2 = s.add_message(s2, "assistant", "Answer two.", parent_id=q2, created_at=2002)
    s.add_feedback(a2, "thumbs_down", {}, 1.0, created_at=2003)
    s.save_profile(u.id, {"length": {"value": 60, "confidence": 0.5}}, session_id=s2, created_at=2011)
    p1 = PreferencePair(SECRET_A, "Short.", "Answer one, short.", "edit", 1.0, message_ids=(q1, a1b),
                        session_id=s1)
    p2 = PreferencePair(SECRET_A, "Answer one, short.", "Answer one, long and winding.", "regenerate", 0.7,
                        split="val", message_ids=(q1, a1, a1b), session_id=s1)
    p3 = PreferencePair(SECRET_B, "Answer two.", None, "thumbs", 0.5, label=-1, message_ids=(q2, a2),
                        session_id=s2)
    s.add_pairs(u.id, [p1, p2, p3], seed=7, created_at=3000)
    s.add_adapter_version(u.id, "/ad/v1", "smollm", "abc", {"acc": 0.6}, status="archived",
                          created_at=3001)
    run = s.add_training_run(u.id, pair_ids=[p1.id], session_ids=[s1], started_at=3002)
    s.add_adapter_version(u.id, "/ad/v2", "smollm", "abc", {"acc": 0.7}, parent_version=1,
                          status="active", created_at=3003)
    s.finish_training_run(run, "ok", metrics={"val_acc": 0.7}, adapter_version=2, ended_at=3004)
    v3run = s.add_training_run(u.id, pair_ids=[p3.id], session_ids=[s2], parent_version=2, started_at=4000)
    s.finish_training_run(v3run, "rejected", reason="worse on held-out", ended_at=4001)
    return u, (s1, s2), (q1, a1, a1b, q2, a2)


def _canonical(text):
    """The bundle with ids renumbered by order of appearance, and the export time dropped."""
    recs = [json.loads(line) for line in text.splitlines()]
    maps = {"session": {}, "message": {}, "feedback": {}, "pair": {}, "training_run": {}}
    for r in recs:
        if r["type"] in maps:
            maps[r["type"]][r["id"]] = len(maps[r["type"]])
    refs = {"session_id": "session", "message_id": "message", "parent_id": "message",
            "superseded_by": "message", "id": None}
    out = []
    for r in recs:
        r = dict(r)
        r.pop("exported_at", None)
        for key, kind in refs.items():
            if key in r and r[key] is not None:
                r[key] = maps[kind or r["type"]][r[key]]
        for key, kind in (("message_ids", "message"), ("pair_ids", "pair"), ("session_ids", "session")):
            if key in r:
                r[key] = [maps[kind][x] for x in r[key]]
        out.append(r)
    return out


def test_export_import_round_trip_is_lossless(tmp_path):
    a = open_store(tmp_path / "a.db")
    _populate(a)
    a.get_or_create_user("other")  # another user must not leak into ann's bundle
    bundle = tmp_path / "ann.jsonl"
    text = a.export_user("ann", bundle)
    assert oct(os.stat(bundle).st_mode & 0o777) == "0o600"
    header = json.loads(text.splitlines()[0])
    assert header["type"] == "header" and header["version"] == 1
    b = open_store(tmp_path / "b.db")
    filler = b.get_or_create_user("filler")  # so ids in b differ from a
    fs = b.start_session(filler.id)
    b.add_message(fs, "user", "x")
    assert b.import_user(bundle) == "ann"
    again = b.export_user("ann")
    assert _canonical(again) == _canonical(text)
    # The imported conversation reads the same.
    ua, ub = a.get_user("ann"), b.get_user("ann")
    conv = lambda s, u: [[(m.role, m.text) for m in s.conversation(x.id)] for x in s.sessions(u.id)]  # noqa: E731
    assert conv(a, ua) == conv(b, ub)
    assert [(p.prompt, p.chosen, p.rejected, p.split, p.label) for p in a.pairs(ua.id, split=None)] == \
        [(p.prompt, p.chosen, p.rejected, p.split, p.label) for p in b.pairs(ub.id, split=None)]
    # Importing the same name again is refused unless renamed.
    with pytest.raises(ASLSError, match="already exists.*rename"):
        b.import_user(bundle)
    assert b.import_user(text, rename="ann2") == "ann2"
    assert _canonical(b.export_user("ann2"))[2:] == _canonical(text)[2:]


@pytest.mark.parametrize("mutate, where", [
    (lambda lines: lines[:3] + ["{not json"] + lines[3:], "line 4"),
    (lambda lines: lines[:2] + ['{"type": "message", "id": 1}'] + lines[2:], "line 3"),
    (lambda lines: lines + ['{"type": "wizard"}'], None),
    (lambda lines: ['{"type": "header", "format": "other"}'] + lines[1:], "line 1"),
    (lambda lines: lines + ['[1, 2]'], None),
])
def test_malformed_import_names_the_line_and_imports_nothing(tmp_path, mutate, where):
    a = open_store(tmp_path / "a.db")
    _populate(a)
    lines = a.export_user("ann").splitlines()
    bad = mutate(lines)
    where = where or f"line {len(bad)}"
    b = open_store(tmp_path / "b.db")
    with pytest.raises(ASLSError, match=where):
        b.import_user("\n".join(bad) + "\n")
    assert b.list_users() == []
    assert b.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_import_with_a_dangling_reference_rolls_back(tmp_path):
    a = open_store(tmp_path / "a.db")
    _populate(a)
    lines = a.export_user("ann").splitlines()
    recs = [json.loads(x) for x in lines]
    idx = next(i for i, r in enumerate(recs) if r["type"] == "feedback")
    recs[idx]["message_id"] = 424242
    b = open_store(tmp_path / "b.db")
    with pytest.raises(ASLSError, match=f"line {idx + 1}.*424242"):
        b.import_user("\n".join(json.dumps(r) for r in recs))
    assert b.list_users() == [] and b.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0


def _raw(path):
    data = b""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(str(path) + suffix):
            with open(str(path) + suffix, "rb") as f:
                data += f.read()
    return data


def test_forget_session_removes_derived_rows_taints_adapters_and_bytes(isolated_home):
    s = open_store()
    u, (s1, s2), (q1, a1, a1b, q2, a2) = _populate(s)
    db = isolated_home / "asls.db"
    s.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert SECRET_A.encode() in _raw(db)
    summary = s.forget("ann", session_id=s1)
    assert summary.sessions == 1 and summary.messages == 3 and summary.pairs == 2
    assert summary.feedback == 3  # regenerate, edit, thumbs_up
    assert summary.profiles == 2  # v1 counted s1, v2 came after it
    assert summary.tainted_versions == (2,)  # trained on p1 / s1; v1 is clean
    assert summary.tainted_paths == ("/ad/v2",)
    assert [s_.id for s_ in s.sessions(u.id)] == [s2]
    assert [p.prompt for p in s.pairs(u.id, split=None)] == [SECRET_B]
    assert s.profiles(u.id) == []
    assert {a.version: a.status for a in s.adapter_versions(u.id)} == {1: "archived", 2: "tainted"}
    assert s.active_adapter(u.id) is None and s.last_clean_adapter(u.id).version == 1
    assert s.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1
    assert not os.path.exists(str(db) + "-wal") or os.path.getsize(str(db) + "-wal") == 0
    raw = _raw(db)
    assert SECRET_A.encode() not in raw and b"zebrafish" not in raw
    assert SECRET_B.encode() in raw
    assert s.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.close()
    raw = _raw(db)
    assert SECRET_A.encode() not in raw


def test_forget_time_range_and_everything(isolated_home):
    s = open_store()
    u, (s1, s2), _ = _populate(s)
    summary = s.forget("ann", since=1500, until=2500)
    assert summary.sessions == 1 and summary.messages == 2 and summary.pairs == 1
    assert summary.profiles == 1  # only v2 counted session 2
    assert [p.version for p in s.profiles(u.id)] == [1]
    assert [x.id for x in s.sessions(u.id)] == [s1]
    assert summary.tainted_versions == ()  # the run on p3 was rejected and made no version
    summary = s.forget("ann", everything=True)
    assert summary.sessions == 1 and summary.pairs == 2
    assert summary.tainted_versions == (1, 2)  # everything: no version is clean any more
    for table in ("sessions", "messages", "feedback", "pairs", "profiles", "pair_messages"):
        assert s.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    assert all(a.status == "tainted" for a in s.adapter_versions(u.id))
    raw = _raw(isolated_home / "asls.db")
    assert SECRET_A.encode() not in raw and SECRET_B.encode() not in raw


def test_forget_bad_requests(isolated_home):
    s = open_store()
    _populate(s)
    other = s.get_or_create_user("bob")
    bob_session = s.start_session(other.id)
    with pytest.raises(ASLSError, match="exactly one"):
        s.forget("ann")
    with pytest.raises(ASLSError, match="no session"):
        s.forget("ann", session_id=bob_session)
    with pytest.raises(ASLSError, match="no user named 'zed'"):
        s.forget("zed", everything=True)
    assert len(s.sessions(s.get_user("ann").id)) == 2
