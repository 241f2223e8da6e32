"""Does an answer's SQL return the right rows? The ``wrong_code`` issue for the held-out prompts that ask for a query.

"Write a SQL query that counts the rows in a table called users." answered with ``SELECT * FROM users WHERE id NOT
IN (1, 2);`` passes every text check and the relevance check; only running it tells. The held-out prompts that ask
for a SQL query carry a small database and a reference query in ``data/sql_tests.jsonl``: each statement of the
answer that can be the query asked for (``SELECT`` / ``WITH``; ``DELETE`` for a task that changes the table) runs
on a fresh in-memory SQLite copy of that database, and the answer passes when one of them gives what the reference
gives: the same rows, compared on the reference's columns (``compare``: any of the answer's columns may hold each,
so ``SELECT *`` with the asked column in it passes) and in the same order where the prompt asks for one
(``ordered``); for a task that changes a table, the table read back by ``check`` afterwards. Values compare as
numbers to two decimals, text without case or surrounding space, and a comma-separated list as the set of its
items (``GROUP_CONCAT`` in any order); a test may accept ``alternatives`` to its reference (one row per student
with their courses in a list, or one row per student and course).

The fixtures are chosen so that a near miss differs (a year filter left out, counts per day instead of per month,
an id equal to the count asked for). Dialect: the query runs on SQLite with MySQL's and PostgreSQL's usual date
functions supplied (``YEAR``, ``MONTH``, ``DATE_FORMAT``, ``DATE_TRUNC``, ``TO_CHAR``, ``EXTRACT(... FROM ...)``);
a statement SQLite cannot run otherwise counts as wrong, and so does a finished code block with no query in it (a
``CREATE TABLE`` of its own). Not judged: an answer the budget cut off before any statement of it ended, unless one
already passes. The database lives in memory, may not attach files, and stops
after ``MAX_STEPS`` virtual-machine steps; this runs only in ``asls eval``, on the answers to its own prompts.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from functools import lru_cache

from asls_mlx.data_files import load_prompts, sql_tests
from asls_mlx.profiling.content import ended

MAX_STEPS = 2_000_000  # SQLite virtual-machine steps: a runaway recursive CTE stops here
MAX_ROWS = 1000
_FENCE_LINE = re.compile(r"^[ \t]*```.*$", re.MULTILINE)
_CLOSED_FENCE = re.compile(r"```.*?```", re.DOTALL)
_STATEMENT = re.compile(r"(?:^[ \t]*|(?<=`))((?:SELECT|WITH|DELETE)\b.*?)(;|`|\n[ \t]*\n|\Z)",
                        re.IGNORECASE | re.DOTALL | re.MULTILINE)
_EXTRACT = re.compile(r"\bEXTRACT\s*\(\s*(YEAR|MONTH|DAY)\s+FROM\s+", re.IGNORECASE)
_KINDS = {"query": ("select", "with"), "change": ("delete", "with")}


@lru_cache(maxsize=1)
def sql_tests_by_prompt() -> dict[str, dict]:
    """The bundled SQL tests, keyed by the held-out prompt's text."""
    prompts = {row["id"]: row["prompt"] for row in load_prompts()}
    return {prompts[row["id"]]: row for row in sql_tests()}


def _date(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).strip()[:19])
    except ValueError:
        return None


def _date_fn(fmt):
    return lambda value, *rest: None if (d := _date(value)) is None else fmt(d, *rest)


_FUNCTIONS = {  # the other dialects' date functions the embedded model writes, on SQLite's text dates
    ("year", 1): _date_fn(lambda d: d.year),
    ("month", 1): _date_fn(lambda d: d.month),
    ("day", 1): _date_fn(lambda d: d.day),
    ("date_format", 2): _date_fn(lambda d, f: d.strftime(str(f).replace("%i", "%M"))),
    ("date_trunc", 2): lambda unit, value: None if (d := _date(value)) is None else (
        d.strftime("%Y-01-01") if str(unit).lower() == "year" else d.strftime("%Y-%m-01")),
    ("to_char", 2): _date_fn(lambda d, f: str(f).replace("YYYY", f"{d.year:04d}").replace("MM", f"{d.month:02d}")
                             .replace("DD", f"{d.day:02d}")),
}


def _deny_attach(action: int, *args) -> int:
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else sqlite3.SQLITE_OK


def _database(setup: str) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(setup)
    for (name, arity), fn in _FUNCTIONS.items():
        db.create_function(name, arity, fn, deterministic=True)
    db.set_authorizer(_deny_attach)
    steps = iter(range(MAX_STEPS // 1000))
    db.set_progress_handler(lambda: next(steps, None) is None, 1000)  # a true return aborts the statement
    return db


def _value(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return round(float(v), 2)
    text = str(v).strip().casefold() if v is not None else None
    if text and "," in text:
        return tuple(sorted(part.strip() for part in text.split(",")))
    return text


def _execute(db: sqlite3.Connection, sql: str) -> sqlite3.Cursor | None:
    """``sql`` run in SQLite (EXTRACT(MONTH FROM x) read as MONTH(x)), or None when it cannot run."""
    try:
        return db.execute(_EXTRACT.sub(lambda m: f"{m.group(1)}(", sql))
    except (sqlite3.Error, ValueError, OverflowError):  # includes a statement the progress handler stopped
        return None


def _rows(db: sqlite3.Connection, sql: str) -> list[tuple] | None:
    """The rows ``sql`` returns (values normalised), or None when SQLite cannot run it."""
    cursor = _execute(db, sql)
    try:
        return None if cursor is None else [tuple(_value(v) for v in row) for row in cursor.fetchmany(MAX_ROWS)]
    except (sqlite3.Error, ValueError, OverflowError):
        return None


def _matches(got: list[tuple], want: list[tuple], ordered: bool) -> bool:
    """Whether some choice of ``got``'s columns, one for each of ``want``'s, gives ``want``'s rows."""
    if len(got) != len(want) or not want:
        return len(got) == len(want)
    width, need = len(got[0]), len(want[0])

    def fits(cols: tuple[int, ...]) -> bool:
        picked = [tuple(row[c] for c in cols) for row in got]
        return picked == want if ordered else sorted(picked, key=repr) == sorted(want, key=repr)

    def search(cols: tuple[int, ...]) -> bool:
        if len(cols) == need:
            return fits(cols)
        return any(search(cols + (c,)) for c in range(width) if c not in cols)

    return width >= need and search(())


def _outcome(test: dict, sql: str, reference: bool = False) -> list[tuple] | None:
    """What ``sql`` gives on a fresh copy of the test's database: its rows (the reference's on its ``compare``
    columns), or for a statement that changes a table the table read back by ``check``; None if it cannot run."""
    db = _database(test["setup"])
    try:
        if test.get("kind", "query") == "change":
            return None if _execute(db, sql) is None else _rows(db, test["check"])
        rows = _rows(db, sql)
        if rows is not None and reference and test.get("compare") is not None:
            rows = [tuple(row[c] for c in test["compare"]) for row in rows]
        return rows
    finally:
        db.close()


def answer_statements(answer: str) -> list[tuple[str, bool]]:
    """The answer's SQL statements that start a line or inline code with SELECT, WITH or DELETE, each with whether
    the budget may have cut it off (it runs to the end of an answer that may be cut, with no ``;``). A code fence
    line ends a statement like a blank line does."""
    text = _FENCE_LINE.sub("\n", answer or "").rstrip()
    return [(m.group(1).strip(), not m.group(2).strip() and m.end() >= len(text) and not ended(answer or ""))
            for m in _STATEMENT.finditer(text)]


@lru_cache(maxsize=None)
def _wanted(prompt: str) -> tuple:
    """What the reference query and its alternatives give, once per test (the data does not change in a run)."""
    test = sql_tests_by_prompt()[prompt]
    return tuple(_outcome(test, sql, reference=True) for sql in [test["reference"], *test.get("alternatives", ())])


@lru_cache(maxsize=4096)
def sql_passes(prompt: str, answer: str) -> bool | None:
    """True: a statement of the answer gives the reference's result; False: none does (or a finished answer or code
    block has none); None: the prompt has no SQL test, or the budget cut the answer off inside its only statements
    or before any."""
    test = sql_tests_by_prompt().get(prompt)
    if test is None:
        return None
    wants = _wanted(prompt)
    kinds = _KINDS[test.get("kind", "query")]
    found = [(sql, cut) for sql, cut in answer_statements(answer) if sql.split(None, 1)[0].lower() in kinds]
    ordered = bool(test.get("ordered"))
    for sql, _ in found:
        got = _outcome(test, sql)
        if got is not None and any(want is not None and _matches(got, want, ordered) for want in wants):
            return True
    if any(not cut for _, cut in found) or ended(answer or "") or not found and _CLOSED_FENCE.search(answer or ""):
        return False  # a finished code block that is no query (a CREATE TABLE) is a wrong answer too
    return None


def wrong_sql(prompt: str, answer: str) -> bool:
    """The answer to a prompt with a SQL test gives the wrong rows, or no query at all."""
    return sql_passes(prompt, answer) is False
