"""Export one user to a JSONL bundle and import it back, losslessly and all-or-nothing.

Format: one JSON object per line, each with a ``type``. Line 1 is the header
``{"type": "header", "format": "asls-user-bundle", "version": 1, "schema": N, "user": name}``; then
``user``, ``session``, ``message``, ``feedback``, ``profile``, ``pair``, ``adapter_version`` and
``training_run`` records carrying the ids of the exporting database. Import maps those ids to new ones,
so a bundle can go into any database. Adapter weights are files, not rows: copy them separately.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asls_mlx.errors import ASLSError
from asls_mlx.paths import atomic_write_text
from asls_mlx.store.schema import ADAPTER_STATUSES, FEEDBACK_KINDS, PAIR_SOURCES, RUN_STATUSES, SCHEMA_VERSION

if TYPE_CHECKING:
    from asls_mlx.store.db import Store

FORMAT = "asls-user-bundle"
FORMAT_VERSION = 1

# Columns exported per record type (the table's own ``id`` is exported too, as the bundle-local id).
_COLUMNS: dict[str, tuple[str, ...]] = {
    "session": ("id", "started_at", "ended_at", "processed"),
    "message": ("id", "session_id", "role", "content", "parent_id", "superseded_by", "edited_content",
                "created_at"),
    "feedback": ("id", "message_id", "kind", "payload", "confidence", "created_at"),
    "profile": ("version", "session_id", "data", "created_at"),
    "pair": ("id", "session_id", "prompt", "chosen", "rejected", "label", "source", "weight", "split",
             "seed", "hash", "created_at", "used_in_version"),
    "adapter_version": ("version", "path", "base_model", "base_hash", "status", "metrics",
                        "parent_version", "created_at"),
    "training_run": ("id", "started_at", "ended_at", "status", "reason", "metrics", "parent_version",
                     "adapter_version"),
}
_JSON_FIELDS = {"payload", "data", "metrics"}  # stored as JSON text; exported as JSON values
# The values the schema's CHECK constraints allow, so a bad one is named in words, not as SQL
_ALLOWED: dict[tuple[str, str], tuple] = {
    ("message", "role"): ("user", "assistant", "system"),
    ("feedback", "kind"): FEEDBACK_KINDS,
    ("pair", "source"): PAIR_SOURCES,
    ("pair", "split"): ("train", "val"),
    ("pair", "label"): (-1, 0, 1),
    ("adapter_version", "status"): ADAPTER_STATUSES,
    ("training_run", "status"): RUN_STATUSES,
}
# Columns that must hold text (the rest are numbers, ids or JSON)
_TEXT = {"content", "prompt", "chosen", "path", "base_model", "hash"}


def export_user(store: Store, name: str, path: Path | None = None) -> str:
    """The user's bundle as JSONL text; also written atomically (0600) to ``path`` if given."""
    user = store.get_user(name)
    uid = user.id
    lines: list[dict[str, Any]] = [
        {"type": "header", "format": FORMAT, "version": FORMAT_VERSION, "schema": SCHEMA_VERSION,
         "user": user.name, "exported_at": time.time()},
        {"type": "user", "name": user.name, "created_at": user.created_at},
    ]
    queries = {
        "session": "SELECT * FROM sessions WHERE user_id = ? ORDER BY id",
        "message": "SELECT m.* FROM messages m JOIN sessions s ON s.id = m.session_id "
                    "WHERE s.user_id = ? ORDER BY m.id",
        "feedback": "SELECT f.* FROM feedback f JOIN messages m ON m.id = f.message_id "
                     "JOIN sessions s ON s.id = m.session_id WHERE s.user_id = ? ORDER BY f.id",
        "profile": "SELECT * FROM profiles WHERE user_id = ? ORDER BY version",
        "pair": "SELECT * FROM pairs WHERE user_id = ? ORDER BY id",
        "adapter_version": "SELECT * FROM adapter_versions WHERE user_id = ? ORDER BY version",
        "training_run": "SELECT * FROM training_runs WHERE user_id = ? ORDER BY id",
    }
    for kind, sql in queries.items():
        for row in store.execute(sql, (uid,)).fetchall():
            rec: dict[str, Any] = {"type": kind}
            for col in _COLUMNS[kind]:
                value = row[col]
                rec[col] = json.loads(value) if col in _JSON_FIELDS else value
            if kind == "pair":
                rec["message_ids"] = [r[0] for r in store.execute(
                    "SELECT message_id FROM pair_messages WHERE pair_id = ? ORDER BY message_id",
                    (row["id"],))]
            if kind == "training_run":
                rec["pair_ids"] = [r[0] for r in store.execute(
                    "SELECT pair_id FROM training_run_pairs WHERE run_id = ? ORDER BY pair_id",
                    (row["id"],))]
                rec["session_ids"] = [r[0] for r in store.execute(
                    "SELECT session_id FROM training_run_sessions WHERE run_id = ? ORDER BY session_id",
                    (row["id"],))]
            lines.append(rec)
    text = "".join(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n" for rec in lines)
    if path is not None:
        atomic_write_text(Path(path), text)
    return text


def _parse(text: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ASLSError(f"import: line {lineno} is not valid JSON ({e.msg})") from None
        except RecursionError:
            raise ASLSError(f"import: line {lineno} is nested too deeply to be an asls record") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
            raise ASLSError(f"import: line {lineno} is not an object with a 'type'")
        records.append((lineno, rec))
    if not records or records[0][1].get("type") != "header" or records[0][1].get("format") != FORMAT:
        raise ASLSError(f"import: line 1 must be the {FORMAT} header; is this an asls export?")
    version = records[0][1].get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ASLSError(f"import: line 1: bundle format version {version!r} is not supported "
                        f"(this asls reads up to {FORMAT_VERSION}); upgrade asls")
    schema = records[0][1].get("schema")
    if type(schema) is not int or not 1 <= schema <= SCHEMA_VERSION:
        raise ASLSError(f"import: line 1: the bundle's database schema {schema!r} is not one this asls reads "
                        f"(1 to {SCHEMA_VERSION}); a newer asls wrote it: upgrade asls")
    for lineno, rec in records[1:]:
        kind = rec["type"]
        if kind == "user":
            if not isinstance(rec.get("name"), str):
                raise ASLSError(f"import: line {lineno}: user record has no name")
            continue
        if kind not in _COLUMNS:
            raise ASLSError(f"import: line {lineno}: unknown record type {kind!r}")
        missing = [c for c in _COLUMNS[kind] if c not in rec]
        if missing:
            raise ASLSError(f"import: line {lineno}: {kind} record lacks {', '.join(missing)}")
        _check_values(kind, rec, lineno)
    if sum(1 for _, r in records if r["type"] == "user") != 1:
        raise ASLSError("import: the bundle must hold exactly one user record")
    return records


def _check_values(kind: str, rec: dict[str, Any], lineno: int) -> None:
    """Name a value the database would refuse (a CHECK or NOT NULL constraint) in words."""
    for (k, col), allowed in _ALLOWED.items():
        if k == kind and (rec[col] not in allowed or isinstance(rec[col], bool)):
            raise ASLSError(f"import: line {lineno}: {kind} {col} {rec[col]!r} is not one of "
                            f"{', '.join(map(str, allowed))}; nothing was imported")
    for col in _TEXT & set(_COLUMNS[kind]):
        if not isinstance(rec[col], str):
            raise ASLSError(f"import: line {lineno}: {kind} {col} must be text, not "
                            f"{type(rec[col]).__name__}; nothing was imported")


def _in_words(e: sqlite3.Error) -> str:
    """SQLite's constraint messages ("NOT NULL constraint failed: messages.content") as a sentence."""
    text = str(e)
    for what, words in (("NOT NULL constraint failed: ", "has no value for"),
                        ("UNIQUE constraint failed: ", "repeats a record already in the bundle:"),
                        ("CHECK constraint failed", "holds a value the database does not allow"),
                        ("FOREIGN KEY constraint failed", "refers to a record that does not exist")):
        if text.startswith(what):
            return f"{words} {text[len(what):].strip(': ')}".strip()
    return text


def _is_file(source: str) -> bool:
    try:
        return Path(source).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL, ...: not a path
        return False


def import_user(store: Store, source: Path | str, rename: str | None = None) -> str:
    """Import a bundle (a path, or the JSONL text itself); returns the user name it was stored under.

    All or nothing: any problem raises ASLSError (naming the line) and leaves the database unchanged.
    """
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and _is_file(source)):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: a NUL in the path
            raise ASLSError(f"import: cannot read {str(source)[:200]!r}: {e}") from None
    elif isinstance(source, str):
        text = source
    else:
        raise ASLSError("import: give a bundle path or its text")
    records = _parse(text)
    user_rec = next(r for _, r in records if r["type"] == "user")
    name = store.validate_user_name(rename if rename is not None else user_rec["name"])
    if store.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        raise ASLSError(f"import: a user named {name!r} already exists; pass rename= (`asls import FILE "
                        "--rename NEW`) to import under another name")
    lineno = 0
    try:
        with store.transaction() as conn:
            uid = conn.execute("INSERT INTO users (name, created_at) VALUES (?, ?)",
                               (name, user_rec.get("created_at", time.time()))).lastrowid
            ids: dict[str, dict[Any, int]] = {k: {} for k in ("session", "message", "pair", "run")}
            # A message's superseded_by points forward (to a later alternative): link after all inserts.
            superseded: list[tuple[int, int, Any]] = []
            for lineno, rec in records[1:]:
                _insert(conn, uid, rec, ids, superseded, lineno)
            for lineno, new_id, old_target in superseded:
                conn.execute("UPDATE messages SET superseded_by = ? WHERE id = ?",
                             (ids["message"][old_target], new_id))
    except KeyError as e:
        raise ASLSError(f"import: line {lineno}: refers to id {e.args[0]!r}, which is not in the "
                        "bundle; nothing was imported") from None
    except sqlite3.Error as e:
        raise ASLSError(f"import: line {lineno}: the record {_in_words(e)}; nothing was imported") from None
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise ASLSError(f"import: line {lineno}: {e}; nothing was imported") from None
    return name


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _insert(conn: sqlite3.Connection, uid: int, rec: dict[str, Any], ids: dict[str, dict[Any, int]],
            superseded: list[tuple[int, int, Any]], lineno: int) -> None:
    """Insert one bundle record under the new ids. One branch per record type, each a single INSERT
    mirroring what the export wrote, so the whole mapping reads in one place (hence its length)."""
    kind = rec["type"]
    if kind == "user":
        return
    if kind == "session":
        ids["session"][rec["id"]] = conn.execute(
            "INSERT INTO sessions (user_id, started_at, ended_at, processed) VALUES (?, ?, ?, ?)",
            (uid, rec["started_at"], rec["ended_at"], int(bool(rec["processed"]))),
        ).lastrowid
    elif kind == "message":
        new = conn.execute(
            "INSERT INTO messages (session_id, role, content, parent_id, edited_content, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (ids["session"][rec["session_id"]], rec["role"], rec["content"],
             None if rec["parent_id"] is None else ids["message"][rec["parent_id"]],
             rec["edited_content"], rec["created_at"]),
        ).lastrowid
        ids["message"][rec["id"]] = new
        if rec["superseded_by"] is not None:
            superseded.append((lineno, new, rec["superseded_by"]))
    elif kind == "feedback":
        conn.execute(
            "INSERT INTO feedback (message_id, kind, payload, confidence, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (ids["message"][rec["message_id"]], rec["kind"], _dump(rec["payload"]), rec["confidence"],
             rec["created_at"]),
        )
    elif kind == "profile":
        conn.execute(
            "INSERT INTO profiles (user_id, version, session_id, data, created_at) VALUES (?, ?, ?, ?, ?)",
            (uid, rec["version"], ids["session"].get(rec["session_id"]), _dump(rec["data"]),
             rec["created_at"]),
        )
    elif kind == "pair":
        new = conn.execute(
            "INSERT INTO pairs (user_id, session_id, prompt, chosen, rejected, label, source, weight, "
            "split, seed, hash, created_at, used_in_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, None if rec["session_id"] is None else ids["session"][rec["session_id"]],
             rec["prompt"], rec["chosen"], rec["rejected"], rec["label"], rec["source"], rec["weight"],
             rec["split"], rec["seed"], rec["hash"], rec["created_at"], rec["used_in_version"]),
        ).lastrowid
        ids["pair"][rec["id"]] = new
        conn.executemany("INSERT INTO pair_messages (pair_id, message_id) VALUES (?, ?)",
                         [(new, ids["message"][m]) for m in rec.get("message_ids", [])])
    elif kind == "adapter_version":
        # The path is kept verbatim (lossless round trip) but never trusted: forget only ever deletes
        # the user's own adapter directories (see forget._own_adapter_paths).
        conn.execute(
            "INSERT INTO adapter_versions (user_id, version, path, base_model, base_hash, status, "
            "metrics, parent_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, rec["version"], rec["path"], rec["base_model"], rec["base_hash"], rec["status"],
             _dump(rec["metrics"]), rec["parent_version"], rec["created_at"]),
        )
    elif kind == "training_run":
        new = conn.execute(
            "INSERT INTO training_runs (user_id, started_at, ended_at, status, reason, metrics, "
            "parent_version, adapter_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, rec["started_at"], rec["ended_at"], "interrupted" if rec["status"] == "running" else rec["status"],
             rec["reason"] if rec["status"] != "running" else "it was still running when the bundle was exported",
             _dump(rec["metrics"]), rec["parent_version"], rec["adapter_version"]),
        ).lastrowid
        ids["run"][rec["id"]] = new
        conn.executemany("INSERT INTO training_run_pairs (run_id, pair_id) VALUES (?, ?)",
                         [(new, ids["pair"][p]) for p in rec.get("pair_ids", [])])
        conn.executemany("INSERT INTO training_run_sessions (run_id, session_id) VALUES (?, ?)",
                         [(new, ids["session"][s]) for s in rec.get("session_ids", [])])
