"""Small files shaped like the two histories `asls import --from` reads, for tests and the docs' demo.

- ChatGPT's data export: ``conversations.json``, a list of conversations whose messages form a tree
  (``mapping``: node id -> {message, parent, children}); ``current_node`` is the leaf the user last saw, and
  a regenerated answer is a sibling of the kept one.
- simonw/llm's ``logs.db``: the legacy ``responses`` + ``conversations`` tables (llm's migration m010) and
  the message store of newer llm (m023: ``threads``, ``turns``, ``turn_search``), columns as llm creates them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

T0 = 1_767_000_000.0  # 2025-12-29


def _node(mid, role, text, parent, children, t, content_type="text"):
    message = None if role is None else {
        "id": mid, "author": {"role": role, "name": None, "metadata": {}}, "create_time": t,
        "content": {"content_type": content_type, "parts": [text] if content_type == "text" else [{"asset": "x"}]},
        "status": "finished_successfully", "metadata": {}, "recipient": "all",
    }
    return {"id": mid, "message": message, "parent": parent, "children": children}


def chatgpt_conversations() -> list[dict]:
    """Two conversations: one with a regenerated answer and a "shorter please" correction, one plain."""
    t = T0
    first = {
        "root": _node("root", None, "", None, ["sys"], None),
        "sys": _node("sys", "system", "", "root", ["u1"], None),
        "u1": _node("u1", "user", "What is the capital of France?", "sys", ["a1", "a1b"], t + 1),
        "a1": _node("a1", "assistant", "France is a country in Western Europe with a long history. Its capital "
                    "and largest city is Paris, on the Seine.", "u1", [], t + 2),
        "a1b": _node("a1b", "assistant", "Paris is the capital of France.", "u1", ["u2"], t + 3),
        "u2": _node("u2", "user", "Explain what a mutex is.", "a1b", ["a2"], t + 4),
        "a2": _node("a2", "assistant", "A mutex is a lock that lets only one thread at a time run a critical section "
                    "of code. Threads that want it wait until the holder releases it; this keeps shared data "
                    "consistent. Mutexes can deadlock when two threads each hold one and wait for the other.",
                    "u2", ["u3"], t + 5),
        "u3": _node("u3", "user", "Shorter please.", "a2", ["a3"], t + 6),
        "a3": _node("a3", "assistant", "A mutex lets one thread at a time into a critical section.", "u3", ["img"], t + 7),
        "img": _node("img", "user", "", "a3", [], t + 8, content_type="multimodal_text"),
    }
    second = {
        "r": _node("r", None, "", None, ["q"], None),
        "q": _node("q", "user", "Name a prime number above 10.", "r", ["a"], t + 100),
        "a": _node("a", "assistant", "11 is a prime number.", "q", [], t + 101),
    }
    return [
        {"title": "Capital and mutexes", "create_time": t, "update_time": t + 8, "mapping": first,
         "current_node": "img", "id": "c-1"},
        {"title": "Primes", "create_time": t + 100, "update_time": t + 101, "mapping": second,
         "current_node": "a", "id": "c-2"},
    ]


def chatgpt_export(path: Path) -> Path:
    path.write_text(json.dumps(chatgpt_conversations()))
    return path


LEGACY_SCHEMA = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, name TEXT, model TEXT);
CREATE TABLE responses (id TEXT PRIMARY KEY, model TEXT, prompt TEXT, system TEXT, prompt_json TEXT,
  options_json TEXT, response TEXT, response_json TEXT, conversation_id TEXT REFERENCES conversations(id),
  duration_ms INTEGER, datetime_utc TEXT);
"""
NEW_SCHEMA = """
CREATE TABLE threads (id TEXT PRIMARY KEY, name TEXT, tip_message_hash TEXT, forked_from TEXT, datetime_utc TEXT);
CREATE TABLE turns (id TEXT PRIMARY KEY, thread_id TEXT, parent_message_hash TEXT, tip_message_hash TEXT, model TEXT,
  resolved_model TEXT, options_json TEXT, schema_id TEXT, input_tokens INTEGER, output_tokens INTEGER,
  token_details TEXT, duration_ms INTEGER, datetime_utc TEXT, response_json TEXT);
CREATE TABLE turn_search (id INTEGER PRIMARY KEY, turn_id TEXT, prompt TEXT, response TEXT);
"""


def llm_logs_db(path: Path, new_tables: bool = True) -> Path:
    """A logs.db with one legacy conversation (two exchanges, one carried over into the new tables when
    ``new_tables``) and, with ``new_tables``, one conversation logged by newer llm."""
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_SCHEMA + (NEW_SCHEMA if new_tables else ""))
    conn.execute("INSERT INTO conversations VALUES ('01old', 'rust lifetimes', 'gpt-4o-mini')")
    legacy = [("r1", "What does a Rust lifetime annotation do?", "It tells the borrow checker how long references live.",
               "2025-06-01T10:00:00"),
              ("r2", "Give me an example.", "fn longest<'a>(x: &'a str, y: &'a str) -> &'a str", "2025-06-01T10:01:00")]
    for rid, prompt, response, when in legacy:
        conn.execute("INSERT INTO responses (id, model, prompt, response, conversation_id, datetime_utc) "
                     "VALUES (?, 'gpt-4o-mini', ?, ?, '01old', ?)", (rid, prompt, response, when))
    if new_tables:
        conn.execute("INSERT INTO threads (id, name, datetime_utc) VALUES ('01old', 'rust lifetimes', '2025-06-01T10:00:00')")
        conn.execute("INSERT INTO threads (id, name, datetime_utc) VALUES ('01new', 'sql joins', '2026-02-01T09:00:00')")
        turns = [("r2", "01old", "Give me an example.", "fn longest<'a>(x: &'a str, y: &'a str) -> &'a str",
                  "2025-06-01T10:01:00"),
                 ("t1", "01new", "What is a left join?", "A left join keeps every row of the left table.",
                  "2026-02-01T09:00:00"),
                 ("t2", "01new", "Shorter please.", "All left rows, matched or not.", "2026-02-01T09:01:00")]
        for i, (tid, thread, prompt, response, when) in enumerate(turns, start=1):
            conn.execute("INSERT INTO turns (id, thread_id, model, datetime_utc) VALUES (?, ?, 'gpt-4o-mini', ?)",
                         (tid, thread, when))
            conn.execute("INSERT INTO turn_search VALUES (?, ?, ?, ?)", (i, tid, prompt, response))
    conn.commit()
    conn.close()
    return path
