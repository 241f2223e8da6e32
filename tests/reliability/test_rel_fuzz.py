"""Bad input: >= 200 seeded generated bad inputs against the CLI, the Python API and import bundles.

0 tracebacks (only ASLSError / a clean exit code), SQL-injection-like text stored verbatim, and an import
is all or nothing.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from asls_mlx import Assistant, AssistantConfig, ASLSError
from asls_mlx.store import open_store

HERE = Path(__file__).parent
SEED = 7
INJECTION = "'); DROP TABLE messages;--"
TABLES = ("users", "sessions", "messages", "feedback", "profiles", "pairs", "pair_messages",
          "adapter_versions", "training_runs", "training_run_pairs", "training_run_sessions")


def bad_strings(rng: random.Random, n: int) -> list[str]:
    fixed = [
        "", " ", "\t\n", "x" * 1_000_000, INJECTION, "Robert'); DROP TABLE users;--", "1 OR 1=1",
        "../../etc", "../../etc/passwd", "..", ".", "a/b", "a\\b", "\x00", "a\x00b", "\u202eevil\u202c",
        "مرحبا بالعالم", "🦄🔥" * 40, "e\u0301" * 200, "\ufeffbom", "\u200b", "%s%s%n", "{0}{__class__}",
        "$(rm -rf ~)", "`id`", "-1", "--", "-", "nan", "inf", "1e999", "9" * 400, "None", "null",
        "n" * 65, "n" * 64, "\x1b[31mred", "line1\nline2", "\r", "\udcff\udcfe",
        b"\xff\xfe\x00garbage\x80".decode("utf-8", "surrogateescape"),
    ]
    out = list(fixed)
    alphabet = ["\x00", "\x07", "\udc80", "é", "𝕏", "'", '"', ";", "\\", "/", "..", "%", "\n", " ", "a", "Z", "🙂", "\u0301"]
    while len(out) < n:
        k = rng.choice([1, 3, 10, 80, 5000])
        out.append("".join(rng.choice(alphabet) for _ in range(k)))
    return out


def _counts(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()


def test_cli_fuzz_no_tracebacks(tmp_path, isolated_home, tiny_model_dir):
    rng = random.Random(SEED)
    values = bad_strings(rng, 60)
    model = str(tiny_model_dir)
    cases: list[list[str]] = []
    must_fail: list[int] = []
    for v in values:
        cases.append(["chat", "--model", model, "--user", v, "--max-tokens", "2"])
        if v and not v.strip() or len(v) > 64 or "/" in v or "\\" in v or v in (".", "..") or not v.isprintable() or v != v.strip():
            must_fail.append(len(cases) - 1)  # an invalid user name is refused
        cases.append(["history", "--user", v])
        cases.append(["forget", "--user", v, "--session", v, "--yes"])
    for v in values[:30]:
        for flag in ("--max-tokens", "--temperature", "--seed"):
            if v.strip().lstrip("-").replace(".", "", 1).isdigit() or v.strip() in ("nan", "inf", "1e999"):
                continue
            cases.append(["chat", "--model", model, flag, v])
            must_fail.append(len(cases) - 1)
        cases.append(["history", "--limit", v])
        cases.append(["adapters", "--user", "fuzz", "rollback", v])
        cases.append(["import", v])
        must_fail.append(len(cases) - 1)
        cases.append(["forget", "--user", "fuzz", "--since", v, "--yes"])
        cases.append([v])
        if v not in ("chat", "-h", "--help"):
            must_fail.append(len(cases) - 1)
        cases.append(["chat", "--model", v, "--user", "fuzz"])
        must_fail.append(len(cases) - 1)
    cases += [["export", "--user", "nobody", "out.jsonl"], ["train", "--user", "fuzz", "--model", model, "--budget", "-5"],
              ["adapters", "--user", "fuzz", "rollback", "99"], ["profile", "--user", "nobody"], ["--bogus"],
              ["chat", "--train", "sometimes"], ["forget", "--user", "fuzz"], ["eval", "--arms", INJECTION, "--bogus"]]
    must_fail += [len(cases) - 4, len(cases) - 3, len(cases) - 2, len(cases) - 1]
    assert len(cases) >= 200
    case_file, out_file = tmp_path / "cases.json", tmp_path / "results.json"
    case_file.write_text(json.dumps(cases))
    cwd = tmp_path / "a" / "b" / "c" / "d"  # relative paths like ../../etc stay inside tmp_path
    cwd.mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(HERE / "cli_fuzz_child.py"), str(case_file), str(out_file)],
                          cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out_file.read_text())
    escaped = sorted({f"{cases[i][0][:20]}: {r['escaped'].splitlines()[-1][:120]}" for i, r in enumerate(results) if r["escaped"]})
    assert not escaped, "\n".join(escaped)
    tracebacks = [(cases[i][:3], r["stderr_tail"]) for i, r in enumerate(results) if r["traceback"]]
    assert not tracebacks, tracebacks[:3]
    succeeded = [(ascii(cases[i][4])[:60] if len(cases[i]) > 4 else cases[i][:3], r["rc"]) for i, r in enumerate(results) if i in must_fail and r["rc"] == 0]
    assert not succeeded, succeeded[:5]
    db = isolated_home / "asls.db"
    if db.exists():
        store = open_store()
        try:
            for u in store.list_users():
                store.validate_user_name(u.name)  # no invalid name ever got in
        finally:
            store.close()
        assert set(TABLES) <= set(_counts(db))  # no table was dropped


def test_api_fuzz_errors_are_asls_errors_and_text_is_verbatim(tiny_model_dir):
    rng = random.Random(SEED + 1)
    values = [v for v in bad_strings(rng, 75) if len(v) < 10_000]  # 1 MB texts: once each, below
    wrong_types = [None, 0, 1.5, b"bytes", ["list"], {"d": 1}, object(), True, float("nan")]
    config = AssistantConfig(max_tokens=2, self_labelled=False)
    n = 0
    escaped: set[tuple[str, str]] = set()
    with Assistant(user="fuzz", model=str(tiny_model_dir), config=config) as a:
        for v in values + wrong_types:
            for call in ("chat", "edit", "forget", "import_", "rollback", "user"):
                n += 1
                try:
                    if call == "chat":
                        reply = a.chat(v)
                        user_msg = a.store.message(a.store.message(reply.message_id).parent_id)
                        assert user_msg.content == v  # stored verbatim, injection text included
                    elif call == "edit":
                        a.edit(v)
                        assert a.store.message(a._last_assistant).edited_content == v
                    elif call == "forget":
                        a.forget(session_id=v) if not isinstance(v, str) or v else a.forget(since=v)
                    elif call == "import_":
                        a.import_(v)
                    elif call == "rollback":
                        a.rollback(v)
                    else:
                        u = a.store.get_or_create_user(v)
                        assert u.name == v
                except ASLSError:
                    pass
                except Exception as e:  # noqa: BLE001 - what the test looks for
                    escaped.add((call, f"{type(e).__name__}: {str(e)[:80]}"))
        huge = "x" * 1_000_000
        for call in (lambda: a.edit(huge), lambda: a.store.get_or_create_user(huge), lambda: a.import_(huge),
                     lambda: a.forget(session_id=huge)):
            try:
                call()
            except ASLSError:
                pass
        assert a.chat("still fine?").message_id > 0
    assert n >= 200
    store = open_store()
    try:
        assert store.execute("SELECT COUNT(*) FROM messages").fetchone()[0] > 0  # DROP TABLE did nothing
        assert store.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()
    assert not escaped, sorted(escaped)


def _variants(rng: random.Random, text: str) -> list[str]:
    lines = text.splitlines()
    recs = [json.loads(l) for l in lines]
    out = []
    for cut in sorted(rng.sample(range(1, len(text) - 1), 12)):
        out.append(text[:cut])  # truncated mid-record (most cuts make one line invalid JSON)
    for i in range(1, len(lines)):
        out.append("\n".join(lines[:i] + ["{not json"] + lines[i:]))
    kinds = [i for i, r in enumerate(recs) if r["type"] in ("message", "feedback", "pair", "session")]
    mutations = [
        lambda r: r.update(role="hacker") if r["type"] == "message" else r.update(type="message"),
        lambda r: r.update(content={"nested": [1, 2]}),
        lambda r: r.update(session_id=424242),
        lambda r: r.update(id=[1, 2]),
        lambda r: r.update(created_at="yesterday"),
        lambda r: r.update(kind="DROP TABLE"),
        lambda r: r.update(version=10 ** 30, id=10 ** 30, session_id=10 ** 30),
        lambda r: r.update(content="\ud800 lone surrogate"),
        lambda r: r.pop("created_at"),
        lambda r: r.update(type=INJECTION),
        lambda r: r.update(split="test", label=7, source="oracle"),
        lambda r: r.update(message_id=None),
    ]
    for m in mutations:
        for i in rng.sample(kinds, min(3, len(kinds))):
            changed = [dict(r) for r in recs]
            m(changed[i])
            # the broken record goes last: every good row before it must be rolled back
            changed.append(changed.pop(i))
            out.append("\n".join(json.dumps(r) for r in changed))
    header = dict(recs[0])
    out += [
        "", "\n\n", "null", "[]", "[" * 100_000 + "]" * 100_000, json.dumps({"type": "header"}),
        "\n".join([json.dumps(dict(header, version=99))] + lines[1:]),
        "\n".join([json.dumps(dict(header, format="zip"))] + lines[1:]),
        "\n".join(lines + [lines[1]]),  # two user records
        "\n".join(l for l in lines if '"type": "user"' not in l),
        "\n".join([lines[0], json.dumps(dict(recs[1], name="../../etc"))] + lines[2:]),
        "\n".join([lines[0], json.dumps(dict(recs[1], name=INJECTION * 4))] + lines[2:]),
        text.replace('"type": "message"', '"type": "message", "extra": ' + "[" * 5000 + "]" * 5000, 1),
        "\x00" * 100, "\ufeff" + text,
    ]
    return out


def test_import_fuzz_is_all_or_nothing(tmp_path, tiny_model_dir):
    with Assistant(user="src", model=str(tiny_model_dir), config=AssistantConfig(max_tokens=4, self_labelled=False)) as a:
        for q in ("hello", "shorter please", INJECTION):
            a.chat(q)
            a.edit("ok " + q)
        a.end_session(train="none")
        text = a.store.export_user("src")
    rng = random.Random(SEED + 2)
    variants = _variants(rng, text)
    assert len(variants) >= 60
    db = Path(os.environ["ASLS_HOME"]) / "asls.db"
    store = open_store()
    ok = failed = 0
    try:
        for i, v in enumerate(variants):
            before = _counts(db)
            path = tmp_path / f"bundle{i}.jsonl"
            path.write_text(v, encoding="utf-8", errors="surrogateescape")
            try:
                store.import_user(path, rename=f"imp{i}")
                ok += 1
            except ASLSError:
                failed += 1
                assert _counts(db) == before, f"variant {i} failed but left rows behind"
    finally:
        store.close()
    assert failed >= 50, (ok, failed)
