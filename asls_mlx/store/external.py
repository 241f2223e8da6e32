"""Conversations from other assistants, read into a user's history: ChatGPT's data export
(``conversations.json``, or the export's .zip) and simonw/llm's SQLite log (``logs.db``).

Each conversation becomes an ended, unprocessed session of the user, so the profiling layer reads and
mines it like one of their own. A ChatGPT answer the user regenerated is kept as a superseded
alternative with a ``regenerate`` event, exactly as a /regen in the chat stores it.
Reading is strict about structure (a file that is not such an export is refused, naming where) and
lenient about content (images, tool calls and hidden system turns are skipped). The import is one
transaction: all or nothing. A conversation already imported (same start time and first message) is
skipped, so importing a newer export of the same account adds only what is new.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asls_mlx.errors import ASLSError

if TYPE_CHECKING:
    from asls_mlx.store.db import Store

SOURCES = ("chatgpt", "llm")
MAX_FILE_BYTES = 2 * 1024**3  # a larger "export" is not one


@dataclass
class Turn:
    """A user message, the answer kept, and answers the user regenerated away (oldest first)."""

    prompt: str
    answer: str | None
    at: float
    discarded: list[str] = field(default_factory=list)


@dataclass
class Conversation:
    title: str
    started_at: float
    turns: list[Turn] = field(default_factory=list)


@dataclass
class ImportCounts:
    conversations: int = 0
    messages: int = 0
    regenerated: int = 0  # discarded answers kept as alternatives
    skipped: int = 0  # conversations already imported, or with no text turn
    session_ids: list[int] = field(default_factory=list)


def read_conversations(path: Path, source: str) -> list[Conversation]:
    """The conversations in ``path`` (``source``: chatgpt or llm), oldest first; ASLSError if it is not one."""
    if source not in SOURCES:
        raise ASLSError(f"import --from {source!r}: use one of {', '.join(SOURCES)}")
    path = Path(path)
    if not path.is_file():
        raise ASLSError(f"no such file: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ASLSError(f"{path} is larger than 2 GB; that is not a {source} export")
    convs = _chatgpt(path) if source == "chatgpt" else _llm(path)
    return sorted(convs, key=lambda c: c.started_at)


# -- ChatGPT --------------------------------------------------------------------------------------

def _chatgpt_text(path: Path) -> str:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.rsplit("/", 1)[-1] == "conversations.json"), None)
                if name is None:
                    raise ASLSError(f"{path} is a zip without conversations.json; is it ChatGPT's data export?")
                return z.read(name).decode("utf-8")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, RuntimeError) as e:
        raise ASLSError(f"cannot read {path}: {e}") from None


def _chatgpt(path: Path) -> list[Conversation]:
    try:
        data = json.loads(_chatgpt_text(path))
    except json.JSONDecodeError as e:
        raise ASLSError(f"{path} is not JSON ({e.msg} at line {e.lineno}); ChatGPT's export has conversations.json") from None
    except RecursionError:
        raise ASLSError(f"{path} is nested too deeply to be a ChatGPT export") from None
    if not isinstance(data, list):
        raise ASLSError(f"{path}: a ChatGPT export is a list of conversations, not a {type(data).__name__}")
    return [_chatgpt_conversation(c, i) for i, c in enumerate(data, start=1)]


def _need(value: Any, kind: type | tuple, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ASLSError(f"{where} should be {name}, not {type(value).__name__}; is this ChatGPT's conversations.json?")
    return value


def _time(value: Any, where: str, default: float | None = None) -> float:
    if value is None and default is not None:
        return default
    t = float(_need(value, (int, float), where))
    if not math.isfinite(t) or not 0 <= t < 32503680000:  # before the year 3000
        raise ASLSError(f"{where} is not a time ({value!r})")
    return t


def _chatgpt_conversation(conv: Any, i: int) -> Conversation:
    where = f"conversation {i}"
    _need(conv, dict, where)
    mapping = _need(conv.get("mapping"), dict, f"{where}: 'mapping'")
    started = _time(conv.get("create_time"), f"{where}: 'create_time'")
    title = conv.get("title") if isinstance(conv.get("title"), str) else ""
    node_id, path, seen = conv.get("current_node"), [], set()
    while node_id is not None:  # the branch the user last saw, from its leaf up to the root
        if not isinstance(node_id, str) or node_id in seen or node_id not in mapping:
            raise ASLSError(f"{where}: node {str(node_id)[:40]!r} is missing or loops; the export is damaged")
        seen.add(node_id)
        path.append(node_id)
        node_id = _need(mapping[node_id], dict, f"{where}: node {node_id[:40]!r}").get("parent")
    out = Conversation(title[:200], started)
    for node_id in reversed(path):
        role, text, at = _message(mapping[node_id], f"{where}: node {node_id[:40]!r}", started)
        if role == "user" and text:
            out.turns.append(Turn(text, None, at))
        elif role == "assistant" and text and out.turns and out.turns[-1].answer is None:
            turn = out.turns[-1]
            turn.answer = text
            parent = mapping[node_id].get("parent")
            for other in _need(mapping.get(parent, {}).get("children", []), list, f"{where}: 'children'"):
                if isinstance(other, str) and other != node_id and other in mapping:  # regenerated away
                    r, alt, _ = _message(mapping[other], f"{where}: node {str(other)[:40]!r}", started)
                    if r == "assistant" and alt:
                        turn.discarded.append(alt)
    out.turns = [t for t in out.turns if t.answer is not None]
    return out


def _message(node: dict, where: str, default_time: float) -> tuple[str | None, str, float]:
    """(role, text, time) of a mapping node; text is empty for what is not plain text shown to the user."""
    msg = node.get("message")
    if msg is None:
        return None, "", default_time
    _need(msg, dict, f"{where}: 'message'")
    role = _need(msg.get("author", {}), dict, f"{where}: 'author'").get("role")
    content = _need(msg.get("content", {}), dict, f"{where}: 'content'")
    at = _time(msg.get("create_time"), f"{where}: 'create_time'", default_time)
    hidden = (msg.get("metadata") or {}).get("is_visually_hidden_from_conversation") if isinstance(msg.get("metadata"), dict) else False
    if content.get("content_type") not in ("text", "multimodal_text") or hidden or msg.get("recipient", "all") != "all":
        return role, "", at
    parts = _need(content.get("parts", []), list, f"{where}: 'parts'")
    text = "\n".join(p for p in parts if isinstance(p, str)).strip()
    return role, _clean(text, where), at


def _clean(text: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ASLSError(f"{where}: the text is not valid Unicode; the export is damaged") from None
    return text.replace("\x00", "")


# -- simonw/llm -----------------------------------------------------------------------------------

# llm up to 0.2x logged one row per exchange in `responses` (+ `conversations` for names); newer llm writes
# `turns` of `threads`, with the typed prompt and the answer's text in `turn_search`, and leaves the old rows
# in place. A response whose id is also a turn was carried over: the turn is read, the row is not.
_LLM_TURNS = ("SELECT t.id, s.prompt, s.response, t.thread_id, t.datetime_utc, h.name FROM turns t "
              "JOIN turn_search s ON s.turn_id = t.id LEFT JOIN threads h ON h.id = t.thread_id")
_LLM_LEGACY = ("SELECT r.id, r.prompt, r.response, r.conversation_id, r.datetime_utc, {name} FROM responses r "
               "{join} WHERE {where}")


def _llm_rows(conn: sqlite3.Connection, path: Path) -> list[tuple]:
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    new = {"turns", "turn_search"} <= have
    if not new and "responses" not in have:
        raise ASLSError(f"{path} has neither llm's 'responses' nor its 'turns' table; is it llm's logs.db "
                        "(`llm logs path` prints where it is)?")
    rows = list(conn.execute(_LLM_TURNS)) if new else []
    if "responses" in have:
        named = "conversations" in have
        rows += list(conn.execute(_LLM_LEGACY.format(
            name="c.name" if named else "NULL",
            join="LEFT JOIN conversations c ON c.id = r.conversation_id" if named else "",
            where="r.id NOT IN (SELECT id FROM turns)" if "turns" in have else "1")))
    return sorted(rows, key=lambda r: (str(r[4]), str(r[0])))


def _llm(path: Path) -> list[Conversation]:
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise ASLSError(f"{path} is not a SQLite database; llm keeps its log at `llm logs path`")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = _llm_rows(conn, path)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise ASLSError(f"cannot read {path} as llm's log: {e}") from None
    convs: dict[Any, Conversation] = {}
    for n, (_id, prompt, response, conv_id, when, title) in enumerate(rows, start=1):
        where = f"{path.name}: exchange {n}"
        if not isinstance(prompt, str) or not isinstance(response, str) or not prompt.strip() or not response.strip():
            continue  # an attachment without text, a tool call, a failed call
        at = _iso(when, where)
        conv = convs.setdefault(conv_id if conv_id is not None else f"row {n}",
                                Conversation(title[:200] if isinstance(title, str) else "", at))
        conv.turns.append(Turn(_clean(prompt.strip(), where), _clean(response.strip(), where), at))
    return list(convs.values())


def _iso(value: Any, where: str) -> float:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ASLSError(f"{where}: datetime_utc {str(value)[:40]!r} is not an ISO time") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


# -- into the store -------------------------------------------------------------------------------

def store_conversations(store: Store, user_id: int, convs: list[Conversation]) -> ImportCounts:
    """Insert the conversations as ended, unprocessed sessions of the user, in one transaction."""
    counts = ImportCounts()
    with store.transaction() as conn:
        for conv in convs:
            if not conv.turns or _already(conn, user_id, conv):
                counts.skipped += 1
                continue
            ended = max(t.at for t in conv.turns)
            sid = conn.execute("INSERT INTO sessions (user_id, started_at, ended_at) VALUES (?, ?, ?)",
                               (user_id, conv.started_at, max(ended, conv.started_at))).lastrowid
            for t in conv.turns:
                _insert_turn(conn, sid, t, counts)
            counts.conversations += 1
            counts.session_ids.append(int(sid))
    return counts


def _already(conn: sqlite3.Connection, user_id: int, conv: Conversation) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sessions s JOIN messages m ON m.session_id = s.id WHERE s.user_id = ? AND s.started_at = ? "
        "AND m.role = 'user' AND m.content = ? LIMIT 1", (user_id, conv.started_at, conv.turns[0].prompt)).fetchone()
    return row is not None


def _insert_turn(conn: sqlite3.Connection, sid: int, t: Turn, counts: ImportCounts) -> None:
    add = ("INSERT INTO messages (session_id, role, content, parent_id, created_at) VALUES (?, ?, ?, ?, ?)")
    q = conn.execute(add, (sid, "user", t.prompt, None, t.at)).lastrowid
    old = [conn.execute(add, (sid, "assistant", alt, q, t.at)).lastrowid for alt in t.discarded]
    kept = conn.execute(add, (sid, "assistant", t.answer, q, t.at)).lastrowid
    for mid in old:  # what /regen stores: the replaced answer points at the one kept, with a regenerate event
        conn.execute("UPDATE messages SET superseded_by = ? WHERE id = ?", (kept, mid))
        conn.execute("INSERT INTO feedback (message_id, kind, payload, confidence, created_at) "
                     "VALUES (?, 'regenerate', '{\"imported\": true}', 1.0, ?)", (mid, t.at))
    counts.messages += 2 + len(old)
    counts.regenerated += len(old)


__all__ = ["Conversation", "ImportCounts", "SOURCES", "Turn", "read_conversations", "store_conversations"]
