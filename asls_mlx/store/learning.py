"""Store methods for what learning produces: preference pairs, adapter versions and training runs.

A mixin of ``Store`` (it uses ``self.execute`` and ``self.transaction``) kept apart so each file has one
job. Provenance: every training run records the pairs and sessions it used, which is what lets
``forget`` reach the adapter weights trained on forgotten data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from asls_mlx.errors import ASLSError
from asls_mlx.store import schema
from asls_mlx.store.records import AdapterVersion, PreferencePair, TrainingRun, pair_hash


def _json(value: dict[str, Any] | None) -> str:
    return json.dumps(value or {}, ensure_ascii=False, sort_keys=True)


class LearningMixin:
    # -- pairs -----------------------------------------------------------------------------------

    def add_pairs(self, user_id: int, pairs: Iterable[PreferencePair], seed: int | None = None,
                  created_at: float | None = None) -> int:
        """Insert pairs for a user in one transaction; pairs already stored (same hash) are skipped.

        Sets ``pair.id`` on the inserted ones. Returns how many were inserted.
        """
        inserted = 0
        now = time.time() if created_at is None else float(created_at)
        with self.transaction() as conn:
            for p in pairs:
                if p.source not in schema.PAIR_SOURCES:
                    raise ASLSError(f"unknown pair source {p.source!r}")
                if p.split not in ("train", "val"):
                    raise ASLSError(f"unknown pair split {p.split!r}; use 'train' or 'val'")
                cur = conn.execute(
                    "INSERT OR IGNORE INTO pairs (user_id, session_id, prompt, chosen, rejected, label, "
                    "source, weight, split, seed, hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (user_id, p.session_id, p.prompt, p.chosen, p.rejected, int(p.label), p.source,
                     float(p.weight), p.split, seed, pair_hash(p.prompt, p.chosen, p.rejected, p.label),
                     now),
                )
                if cur.rowcount == 1:
                    p.id = int(cur.lastrowid)
                    conn.executemany(
                        "INSERT OR IGNORE INTO pair_messages (pair_id, message_id) VALUES (?, ?)",
                        [(p.id, int(m)) for m in p.message_ids],
                    )
                    inserted += 1
        return inserted

    def pairs(self, user_id: int, split: str | None = "train", unused_only: bool = False,
              limit: int | None = None, source: str | None = None) -> list[PreferencePair]:
        """The user's pairs, oldest first. ``split=None`` gives both splits (training must pass 'train')."""
        sql = "SELECT * FROM pairs WHERE user_id = ?"
        params: list[Any] = [user_id]
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        if unused_only:
            sql += " AND used_in_version IS NULL"
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self.execute(sql, params).fetchall()
        links = self._pair_messages([r["id"] for r in rows])
        return [
            PreferencePair(
                prompt=r["prompt"], chosen=r["chosen"], rejected=r["rejected"], source=r["source"],
                weight=r["weight"], split=r["split"], label=r["label"],
                message_ids=links.get(r["id"], ()), session_id=r["session_id"], id=r["id"],
            )
            for r in rows
        ]

    def _pair_messages(self, pair_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
        out: dict[int, list[int]] = {}
        for chunk_start in range(0, len(pair_ids), 500):  # stay under SQLite's variable limit
            chunk = list(pair_ids[chunk_start:chunk_start + 500])
            marks = ",".join("?" * len(chunk))
            for r in self.execute(
                f"SELECT pair_id, message_id FROM pair_messages WHERE pair_id IN ({marks}) "
                "ORDER BY pair_id, message_id", chunk,
            ):
                out.setdefault(r[0], []).append(r[1])
        return {k: tuple(v) for k, v in out.items()}

    def reference_logps(self, user_id: int, model_id: str) -> dict[str, tuple[float, float | None]]:
        """Stored reference log-probs of the user's pairs under ``model_id``: {tokens key: (chosen, rejected)}."""
        rows = self.execute(
            "SELECT r.tokens_key, r.chosen, r.rejected FROM reference_logps r JOIN pairs p ON p.id = r.pair_id "
            "WHERE p.user_id = ? AND r.model_id = ?",
            (user_id, model_id),
        )
        return {key: (chosen, rejected) for key, chosen, rejected in rows}

    def add_reference_logps(self, model_id: str, rows: Iterable[tuple[int, str, float, float | None]]) -> None:
        """Store ``(pair_id, tokens_key, chosen, rejected)`` reference log-probs (existing ones are kept)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO reference_logps (pair_id, model_id, tokens_key, chosen, rejected) "
                "VALUES (?, ?, ?, ?, ?)",
                [(int(pid), model_id, key, float(c), None if r is None else float(r)) for pid, key, c, r in rows],
            )

    def used_pair_ids(self, user_id: int) -> set[int]:
        """Ids of the user's pairs some adapter version was trained on (their split must not change)."""
        rows = self.execute("SELECT id FROM pairs WHERE user_id = ? AND used_in_version IS NOT NULL", (user_id,))
        return {r[0] for r in rows}

    def set_pair_split(self, pair_id: int, split: str) -> None:
        """Move a pair between splits (only ever train -> val for a pair no adapter has used)."""
        if split not in ("train", "val"):
            raise ASLSError(f"unknown pair split {split!r}; use 'train' or 'val'")
        self.execute("UPDATE pairs SET split = ? WHERE id = ?", (split, pair_id))

    def mark_pairs_used(self, pair_ids: Iterable[int], version: int) -> None:
        """Record that adapter ``version`` was trained on these pairs (first use wins)."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE pairs SET used_in_version = COALESCE(used_in_version, ?) WHERE id = ?",
                [(int(version), int(i)) for i in pair_ids],
            )

    def requeue_pairs(self, user_id: int, versions: Iterable[int]) -> int:
        """Mark the pairs that trained ``versions`` as unused again (after those versions were tainted
        by a forget): the next update retrains them from the last clean version. Returns how many."""
        versions = [int(v) for v in versions]
        if not versions:
            return 0
        marks = ",".join("?" * len(versions))
        cur = self.execute(f"UPDATE pairs SET used_in_version = NULL WHERE user_id = ? AND used_in_version IN ({marks})",
                           [user_id, *versions])
        return cur.rowcount

    # -- adapter versions ------------------------------------------------------------------------

    def add_adapter_version(
        self, user_id: int, path: str, base_model: str, base_hash: str | None = None,
        metrics: dict[str, Any] | None = None, parent_version: int | None = None,
        status: str = "archived", version: int | None = None, created_at: float | None = None,
    ) -> int:
        """Register an adapter version (next number unless given); ``status='active'`` also activates it."""
        if status not in schema.ADAPTER_STATUSES:
            raise ASLSError(f"unknown adapter status {status!r}")
        with self.transaction() as conn:
            if version is None:
                version = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM adapter_versions WHERE user_id = ?",
                    (user_id,),
                ).fetchone()[0]
            if status == "active":
                conn.execute(
                    "UPDATE adapter_versions SET status = 'archived' "
                    "WHERE user_id = ? AND status = 'active'", (user_id,),
                )
            if conn.execute("SELECT 1 FROM adapter_versions WHERE user_id = ? AND version = ?",
                            (user_id, int(version))).fetchone():
                raise ASLSError(f"adapter version {version} is already recorded for this user; "
                                "version numbers are never reused")
            conn.execute(
                "INSERT INTO adapter_versions (user_id, version, path, base_model, base_hash, status, "
                "metrics, parent_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (user_id, int(version), str(path), base_model, base_hash, status, _json(metrics),
                 parent_version, time.time() if created_at is None else float(created_at)),
            )
        return int(version)

    def adapter_version(self, user_id: int, version: int) -> AdapterVersion:
        row = self.execute(
            "SELECT * FROM adapter_versions WHERE user_id = ? AND version = ?", (user_id, version)
        ).fetchone()
        if row is None:
            raise ASLSError(f"no adapter version {version} for this user (see `asls adapters`)")
        return _adapter(row)

    def adapter_versions(self, user_id: int) -> list[AdapterVersion]:
        rows = self.execute("SELECT * FROM adapter_versions WHERE user_id = ? ORDER BY version",
                            (user_id,))
        return [_adapter(r) for r in rows]

    def active_adapter(self, user_id: int) -> AdapterVersion | None:
        """The adapter the chat should use, or None for the base model."""
        row = self.execute(
            "SELECT * FROM adapter_versions WHERE user_id = ? AND status = 'active'", (user_id,)
        ).fetchone()
        return None if row is None else _adapter(row)

    def last_clean_adapter(self, user_id: int) -> AdapterVersion | None:
        """The newest version that is neither tainted nor rejected (where a retrain after forget starts)."""
        row = self.execute(
            "SELECT * FROM adapter_versions WHERE user_id = ? AND status IN ('active', 'archived') "
            "ORDER BY version DESC LIMIT 1", (user_id,),
        ).fetchone()
        return None if row is None else _adapter(row)

    def set_active_adapter(self, user_id: int, version: int | None) -> None:
        """Make ``version`` the active adapter (the old one is archived); None means the base model."""
        with self.transaction() as conn:
            if version is not None:
                current = self.adapter_version(user_id, version)
                if current.status in ("tainted", "rejected"):
                    raise ASLSError(f"adapter version {version} is {current.status}; it cannot be activated")
            conn.execute("UPDATE adapter_versions SET status = 'archived' "
                         "WHERE user_id = ? AND status = 'active'", (user_id,))
            if version is not None:
                conn.execute("UPDATE adapter_versions SET status = 'active' "
                             "WHERE user_id = ? AND version = ?", (user_id, version))

    def mark_tainted(self, user_id: int, versions: Iterable[int]) -> list[int]:
        """Mark versions (and every version trained on top of them) tainted; returns all marked."""
        with self.transaction() as conn:
            tainted = set(int(v) for v in versions)
            rows = conn.execute("SELECT version, parent_version FROM adapter_versions WHERE user_id = ?",
                                (user_id,)).fetchall()
            changed = True
            while changed:  # follow the parent chain: a child inherits its parent's weights
                changed = False
                for r in rows:
                    if r["parent_version"] in tainted and r["version"] not in tainted:
                        tainted.add(r["version"])
                        changed = True
            existing = {r["version"] for r in rows}
            marked = sorted(tainted & existing)
            conn.executemany(
                "UPDATE adapter_versions SET status = 'tainted' WHERE user_id = ? AND version = ?",
                [(user_id, v) for v in marked],
            )
        return marked

    # -- training runs ---------------------------------------------------------------------------

    def add_training_run(self, user_id: int, pair_ids: Iterable[int] = (),
                         session_ids: Iterable[int] = (), parent_version: int | None = None,
                         started_at: float | None = None) -> int:
        """Start a training run (status 'running') with its provenance; returns the run id."""
        with self.transaction() as conn:
            run_id = int(conn.execute(
                "INSERT INTO training_runs (user_id, started_at, status, parent_version) "
                "VALUES (?, ?, 'running', ?)",
                (user_id, time.time() if started_at is None else float(started_at), parent_version),
            ).lastrowid)
            conn.executemany("INSERT OR IGNORE INTO training_run_pairs (run_id, pair_id) VALUES (?, ?)",
                             [(run_id, int(p)) for p in pair_ids])
            conn.executemany(
                "INSERT OR IGNORE INTO training_run_sessions (run_id, session_id) VALUES (?, ?)",
                [(run_id, int(s)) for s in session_ids],
            )
        return run_id

    def finish_training_run(self, run_id: int, status: str, reason: str | None = None,
                            metrics: dict[str, Any] | None = None, adapter_version: int | None = None,
                            ended_at: float | None = None) -> None:
        """Close a run: ok / failed / rejected / cancelled / interrupted, why, its metrics and the version it made."""
        if status not in schema.RUN_STATUSES or status == "running":
            raise ASLSError(f"unknown final run status {status!r}; use one of {', '.join(schema.RUN_STATUSES[1:])}")
        cur = self.execute(
            "UPDATE training_runs SET status = ?, reason = ?, metrics = ?, adapter_version = ?, "
            "ended_at = ? WHERE id = ?",
            (status, reason, _json(metrics), adapter_version,
             time.time() if ended_at is None else float(ended_at), run_id),
        )
        if cur.rowcount != 1:
            raise ASLSError(f"no training run with id {run_id}")

    def next_adapter_version(self, user_id: int) -> int:
        """The number a new adapter version of this user gets (never one used before)."""
        return int(self.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM adapter_versions WHERE user_id = ?",
                                (user_id,)).fetchone()[0])

    def close_interrupted_runs(self, user_id: int,
                               reason: str = "the process ended before the run finished (killed or crashed)") -> int:
        """Mark runs left 'running' by a process that died as 'interrupted'; returns how many.

        Call only while holding the user's training lock (a run in progress holds it)."""
        cur = self.execute(
            "UPDATE training_runs SET status = 'interrupted', reason = ?, ended_at = COALESCE(ended_at, ?) "
            "WHERE user_id = ? AND status = 'running'", (reason, time.time(), user_id))
        return cur.rowcount

    def training_runs(self, user_id: int) -> list[TrainingRun]:
        rows = self.execute("SELECT * FROM training_runs WHERE user_id = ? ORDER BY id",
                            (user_id,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["metrics"] = json.loads(d["metrics"])
            d["pair_ids"] = tuple(x[0] for x in self.execute(
                "SELECT pair_id FROM training_run_pairs WHERE run_id = ? ORDER BY pair_id", (r["id"],)))
            d["session_ids"] = tuple(x[0] for x in self.execute(
                "SELECT session_id FROM training_run_sessions WHERE run_id = ? ORDER BY session_id",
                (r["id"],)))
            out.append(TrainingRun(**d))
        return out


def _adapter(row: Any) -> AdapterVersion:
    d = dict(row)
    d["metrics"] = json.loads(d["metrics"])
    return AdapterVersion(**d)
