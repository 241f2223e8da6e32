"""issue 20 item 6: `asls import --from chatgpt FILE` / `--from llm logs.db` — conversations become sessions of
the user, profiled and mined like their own; all or nothing; fuzzed; and the bundle import's own checks."""

from __future__ import annotations

import copy
import json
import random
import sqlite3
import subprocess
import sys
import zipfile

import pytest
from history_fixtures import chatgpt_conversations, chatgpt_export, llm_logs_db

from asls_mlx import ASLSError, import_history, list_users
from asls_mlx.store import open_store


def run(*args):
    return subprocess.run([sys.executable, "-m", "asls_mlx", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _rows():
    with open_store() as store:
        return {t: store.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("users", "sessions", "messages", "feedback", "pairs", "profiles")}


def test_chatgpt_export_becomes_profiled_mined_sessions(tmp_path):
    summary = import_history(chatgpt_export(tmp_path / "conversations.json"), "chatgpt", user="sam")
    assert (summary.conversations, summary.messages, summary.regenerated, summary.skipped) == (2, 9, 1, 0)
    with open_store() as store:
        user = store.get_user("sam")
        sessions = store.sessions(user.id)
        assert all(s.processed and s.ended_at is not None for s in sessions)
        first = [(m.role, m.content) for m in store.conversation(sessions[0].id)]
        assert first[0] == ("user", "What is the capital of France?")
        assert first[1] == ("assistant", "Paris is the capital of France.")  # the answer kept, not the regenerated one
        assert [m for _, m in first].count("Shorter please.") == 1 and len(first) == 6  # the image turn is skipped
        alternatives = [m for m in store.messages(sessions[0].id) if m.superseded_by is not None]
        assert [m.content[:17] for m in alternatives] == ["France is a count"]
        assert [f.kind for f in store.feedback(message_id=alternatives[0].id)] == ["regenerate"]
        pairs = {p.source: p for p in store.pairs(user.id, split=None)}
        assert store.latest_profile(user.id) is not None
    assert pairs["regenerate"].chosen == "Paris is the capital of France."
    assert pairs["correction"].chosen == "A mutex lets one thread at a time into a critical section."
    assert summary.pairs_mined == 2 and summary.profile_changes  # the profile learned from it at once


def test_reimport_adds_only_new_conversations_and_zip_works(tmp_path):
    path = chatgpt_export(tmp_path / "conversations.json")
    import_history(path, "chatgpt", user="sam")
    before = _rows()
    again = import_history(path, "chatgpt", user="sam")
    assert (again.conversations, again.skipped) == (0, 2) and _rows() == before
    newer = chatgpt_conversations()
    newer[1]["create_time"] += 5000  # a conversation the older export did not have
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as z:
        z.writestr("chatgpt-export/conversations.json", json.dumps(newer))
    assert import_history(tmp_path / "export.zip", "chatgpt", user="sam").conversations == 1


@pytest.mark.parametrize("new_tables", [True, False])
def test_llm_logs_legacy_and_new_tables(tmp_path, new_tables):
    summary = import_history(llm_logs_db(tmp_path / "logs.db", new_tables), "llm", user="lee")
    with open_store() as store:
        user = store.get_user("lee")
        convs = [[m.content for m in store.conversation(s.id)] for s in store.sessions(user.id)]
    assert convs[0] == ["What does a Rust lifetime annotation do?", "It tells the borrow checker how long references live.",
                        "Give me an example.", "fn longest<'a>(x: &'a str, y: &'a str) -> &'a str"]  # carried over once
    if new_tables:
        assert convs[1] == ["What is a left join?", "A left join keeps every row of the left table.",
                            "Shorter please.", "All left rows, matched or not."]
        assert summary.pairs_mined == 1  # the correction
    assert summary.conversations == len(convs) == (2 if new_tables else 1)


def test_cli_import_from_chatgpt_and_llm(tmp_path):
    out = run("import", "--from", "chatgpt", str(chatgpt_export(tmp_path / "c.json")), "--user", "sam")
    assert out.returncode == 0, out.stderr
    assert "imported 2 conversations (9 messages, 1 regenerated answer) into sam; 2 preference pairs mined" in out.stdout
    assert "`asls train --user sam` learns from them now" in out.stdout
    doc = json.loads(run("import", "--from", "llm", str(llm_logs_db(tmp_path / "logs.db")), "--user", "sam",
                         "--json").stdout)
    assert doc["kind"] == "import" and doc["conversations"] == 2 and doc["source"] == "llm"
    wrong = run("import", "--from", "llm", str(tmp_path / "c.json"), "--user", "sam")
    assert wrong.returncode == 1 and "is not a SQLite database" in wrong.stderr
    assert run("import", "--from", "chatgpt", str(tmp_path / "c.json"), "--rename", "x").returncode == 1


@pytest.mark.parametrize("mutate, message", [
    (lambda d: {"not": "a list"}, "a list of conversations, not a dict"),
    (lambda d: d[0].pop("mapping") and d, "conversation 1: 'mapping' should be dict, not NoneType"),
    (lambda d: d[1]["mapping"]["q"].update(parent="a") or d, "missing or loops"),
    (lambda d: d[0].update(current_node="nowhere") or d, "node 'nowhere' is missing"),
    (lambda d: d[1].update(create_time="yesterday") or d, "conversation 2: 'create_time' should be int or float"),
    (lambda d: d[1].update(create_time=1e300) or d, "is not a time"),
    (lambda d: d[0]["mapping"]["u1"]["message"]["content"].update(parts="text") or d, "'parts' should be list"),
])
def test_a_damaged_chatgpt_export_imports_nothing_and_says_where(tmp_path, mutate, message):
    import_history(chatgpt_export(tmp_path / "ok.json"), "chatgpt", user="sam")
    before = _rows()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(mutate(chatgpt_conversations())))
    with pytest.raises(ASLSError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_history(bad, "chatgpt", user="sam")
    assert _rows() == before


def test_files_that_are_not_exports(tmp_path):
    (tmp_path / "x.json").write_text("{broken")
    with pytest.raises(ASLSError, match="is not JSON"):
        import_history(tmp_path / "x.json", "chatgpt")
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE notes (x)")
    conn.close()
    with pytest.raises(ASLSError, match="neither llm's 'responses' nor its 'turns' table"):
        import_history(tmp_path / "other.db", "llm")
    with pytest.raises(ASLSError, match="use one of chatgpt, llm"):
        import_history(tmp_path / "x.json", "bard")
    assert list_users() == []


def test_import_is_refused_while_the_user_chats(tmp_path, tiny_model_dir):
    from asls_mlx import Assistant

    a = Assistant(user="busy", model=str(tiny_model_dir))
    try:
        with pytest.raises(ASLSError, match="chatting in another asls process"):
            import_history(chatgpt_export(tmp_path / "c.json"), "chatgpt", user="busy")
    finally:
        a.close()


# -- fuzz: >= 200 seeded mutations; only ASLSError or a clean import, and never half an import -----------------

JUNK = [None, True, -1, 0, 1.5, float("nan"), 1e308, "", "x", "\udcff", "\x00", "'); DROP TABLE messages;--", [], {},
        [None], {"a": 1}, "9" * 50, "🦄" * 100]


def _mutate_json(data, rng: random.Random):
    data = copy.deepcopy(data)
    for _ in range(rng.choice([1, 2, 4])):
        node, path = data, []
        while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
            key = rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
            path.append((node, key))
            node = node[key]
        if not path:
            return rng.choice(JUNK)
        parent, key = path[-1]
        action = rng.random()
        if action < 0.3 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.4 and isinstance(parent, list):
            parent.append(rng.choice(JUNK))
        else:
            parent[key] = rng.choice(JUNK)
    return data


def test_fuzz_chatgpt_import(tmp_path):
    rng = random.Random(20)
    import_history(chatgpt_export(tmp_path / "ok.json"), "chatgpt", user="f")
    outcomes = {"ok": 0, "refused": 0}
    for i in range(200):
        data = _mutate_json(chatgpt_conversations(), rng)
        path = tmp_path / f"f{i}.json"
        path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8", errors="surrogatepass")
        before = _rows()
        try:
            import_history(path, "chatgpt", user="f")
            outcomes["ok"] += 1
        except ASLSError as e:
            assert "\n" not in str(e) and len(str(e)) < 400
            assert _rows() == before  # all or nothing
            outcomes["refused"] += 1
    assert outcomes["ok"] > 10 and outcomes["refused"] > 50, outcomes


def test_fuzz_llm_import(tmp_path):
    rng = random.Random(21)
    outcomes = {"ok": 0, "refused": 0}
    for i in range(60):
        path = llm_logs_db(tmp_path / f"l{i}.db")
        conn = sqlite3.connect(path)
        for _ in range(rng.choice([1, 3])):
            table, column = rng.choice([("responses", "prompt"), ("responses", "response"), ("responses", "datetime_utc"),
                                        ("responses", "conversation_id"), ("turn_search", "prompt"),
                                        ("turns", "datetime_utc"), ("turns", "thread_id"), ("threads", "name")])
            value = rng.choice([v for v in JUNK if not isinstance(v, (list, dict)) and v != "\udcff"] + [b"\xff\xfe"])
            conn.execute(f"UPDATE {table} SET {column} = ?", (value,))
        if rng.random() < 0.2:
            conn.execute(rng.choice(["DROP TABLE turn_search", "DROP TABLE responses", "DROP TABLE conversations"]))
        conn.commit()
        conn.close()
        before = _rows()
        try:
            import_history(path, "llm", user="g")
            outcomes["ok"] += 1
        except ASLSError as e:
            assert "\n" not in str(e)
            assert _rows() == before
            outcomes["refused"] += 1
    assert outcomes["ok"] > 5 and outcomes["refused"] > 5, outcomes


# -- the asls bundle import: schema version, values in words, the --rename hint --------------------------------

def _bundle(tmp_path, tiny_model_dir):
    from asls_mlx import Assistant, AssistantConfig

    with Assistant(user="b", model=str(tiny_model_dir), config=AssistantConfig(max_tokens=4, adapt=False)) as a:
        a.chat("Hello there.")
    path = tmp_path / "b.jsonl"
    assert run("export", "--user", "b", str(path)).returncode == 0
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("change, message", [
    (lambda r: r[0].update(schema=99), "line 1: the bundle's database schema 99 is not one this asls reads"),
    (lambda r: r[0].pop("schema"), "line 1: the bundle's database schema None"),
    (lambda r: next(x for x in r if x["type"] == "message").update(role="robot"),
     "message role 'robot' is not one of user, assistant, system; nothing was imported"),
    (lambda r: next(x for x in r if x["type"] == "message").update(content=None),
     "message content must be text, not NoneType"),
    (lambda r: next(x for x in r if x["type"] == "session").update(started_at=None),
     "the record has no value for sessions.started_at; nothing was imported"),
])
def test_bundle_import_names_bad_values_in_words(tmp_path, tiny_model_dir, change, message):
    records = _bundle(tmp_path, tiny_model_dir)
    change(records)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = run("import", str(bad), "--rename", "b2")
    assert out.returncode == 1 and message in out.stderr and "constraint failed" not in out.stderr
    assert [u.name for u in list_users()] == ["b"]


def test_bundle_name_clash_hint_names_the_real_flag(tmp_path, tiny_model_dir):
    _bundle(tmp_path, tiny_model_dir)
    out = run("import", str(tmp_path / "b.jsonl"))
    assert out.returncode == 1 and "--rename NEW" in out.stderr and "--as" not in out.stderr
