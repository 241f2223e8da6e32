"""What ``run_eval`` measured, and its reports: results.json, results.md and learning_curves.png."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from asls_mlx.adaptation.harm import sign_test_p
from asls_mlx.errors import ASLSError
from asls_mlx.evaluation.correctness import correctness_flips, load_correctness_set
from asls_mlx.evaluation.metrics import mean
from asls_mlx.evaluation.personas import PERSONAS
from asls_mlx.evaluation.stats import bootstrap_ci, paired_delta_ci

Progress = Callable[[str], None]
HELPFUL_KEYS = ("correctness", "correctness_kept", "template_share", "template_delta", "leak_rate")


def to_jsonable(x):
    """Training summaries are dataclasses/objects with floats: keep what JSON can hold."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "__dataclass_fields__"):
        return {k: to_jsonable(getattr(x, k)) for k in x.__dataclass_fields__}
    if hasattr(x, "item"):
        try:
            return to_jsonable(x.item())
        except Exception:
            pass
    return str(x)


@dataclass
class EvalResult:
    """Everything one ``run_eval`` measured. ``runs``: one dict per persona x arm (see ``_run_one``)."""

    config: dict
    runs: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def run(self, persona: str, arm: str, seed: int | None = None) -> dict | None:
        """The run of ``persona`` x ``arm`` (with ``seed``; None: the first seed's)."""
        return next((r for r in self.runs if r["persona"] == persona and r["arm"] == arm
                     and (seed is None or r.get("seed", seed) == seed)), None)

    def curve(self, persona: str, arm: str, key: str = "satisfaction", seed: int | None = None) -> list[float]:
        r = self.run(persona, arm, seed)
        return [s["heldout"][key] for s in r["sessions"]] if r else []

    def helpfulness(self, r: dict) -> dict:
        """The run's helpfulness after the last session: correctness (accuracy, kept vs the base arm),
        template share of its held-out answers and its difference to the base arm's, profile leak rate."""
        last = r["sessions"][-1]["heldout"]
        base = self.run(r["persona"], "base", r.get("seed"))
        base_share = base["sessions"][-1]["heldout"].get("template_share") if base else None
        share = last.get("template_share")
        c = r.get("correctness") or {}
        return {"correctness": c.get("accuracy"), "correctness_kept": c.get("kept_vs_base"),
                "correctness_flips": _flips(c, (base or {}).get("correctness") or {}),
                "template_share": share,
                "template_delta": share - base_share if share is not None and base_share is not None else None,
                "leak_rate": last.get("leak_rate")}

    def rows(self) -> list[dict]:
        """One table row per run: before/final satisfaction, delta vs base, quality, edit cost, retention,
        and ``helpfulness``."""
        out = []
        for r in self.runs:
            seed = r.get("seed")
            sat = self.curve(r["persona"], r["arm"], seed=seed)
            base = self.curve(r["persona"], "base", seed=seed)
            chat_costs = [s["chat"]["edit_cost"] for s in r["sessions"] if s.get("chat")]
            heldout_costs = self.curve(r["persona"], r["arm"], "edit_cost", seed=seed)
            last = r["sessions"][-1]["heldout"]
            out.append({
                "arm": r["arm"], "persona": r["persona"], "seed": seed, "group": persona_group(r["persona"]),
                "before": sat[0], "final": sat[-1],
                "delta_vs_base": sat[-1] - base[-1] if base else None,
                "success": r["sessions"][-1]["heldout"]["success_rate"],
                "quality_pass": r["sessions"][-1]["heldout"]["quality_pass"],
                "edit_cost_heldout": (heldout_costs[0], heldout_costs[-1]),
                "edit_cost_chat": (chat_costs[0], chat_costs[-1]) if chat_costs else None,
                "words": (r["sessions"][0]["heldout"]["words"], r["sessions"][-1]["heldout"]["words"]),
                "retention": r["retention"]["ratio"], "recover": r.get("recover"),
                "irrelevant_rate": last.get("irrelevant_rate"), "commit_rate": commit_rate(r),
                "decisions": update_decisions(r),
                "profile_precision": (r.get("profile") or {}).get("precision"),
                "profile_recall": (r.get("profile") or {}).get("recall"),
            } | self.helpfulness(r))
        return out

    def arm_summary(self) -> list[dict]:
        """Mean over personas (and seeds) per arm (the paper's main table), with 95% bootstrap intervals over
        the held-out answers of the last session, and the paired difference to the profile-in-prompt arm."""
        rows = self.rows()
        out = []
        for arm in dict.fromkeys(r["arm"] for r in rows):
            rs = [r for r in rows if r["arm"] == arm]
            decided = [d for r in rs for d in r["decisions"]]
            out.append({
                "arm": arm, "final": mean(r["final"] for r in rs),
                "delta_vs_base": mean(r["delta_vs_base"] for r in rs),
                "success": mean(r["success"] for r in rs), "quality_pass": mean(r["quality_pass"] for r in rs),
                "edit_cost_first": mean(r["edit_cost_heldout"][0] for r in rs),
                "edit_cost_last": mean(r["edit_cost_heldout"][1] for r in rs),
                "retention": mean(r["retention"] for r in rs),
                "irrelevant_rate": mean(r["irrelevant_rate"] for r in rs),
                "commit_rate": sum(decided) / len(decided) if decided else float("nan"),  # pooled over the runs
                "updates_decided": len(decided),
                "profile_precision": mean(r["profile_precision"] for r in rs),
                "profile_recall": mean(r["profile_recall"] for r in rs),
            } | {k: mean(r[k] for r in rs) for k in HELPFUL_KEYS} | _lowest_kept(rs) | self.intervals(arm))
        return out

    def _last_scores(self, arm: str, group: str | None = None) -> dict[tuple, list[float]]:
        """(persona, seed) -> the last session's per-prompt satisfaction of ``arm`` (a persona group only)."""
        return {(r["persona"], r.get("seed")): r["sessions"][-1]["heldout"].get("per_prompt") or []
                for r in self.runs if r["arm"] == arm and (group is None or persona_group(r["persona"]) == group)}

    def intervals(self, arm: str) -> dict:
        """``arm``'s final satisfaction with its 95% interval, overall and per persona group, and its paired
        difference to profile_prompt (same persona, seed and prompt) with the interval of the difference."""
        out = {}
        for group in (None, "style", "open"):
            mine = self._last_scores(arm, group)
            if not any(mine.values()):
                continue
            tag = "" if group is None else f"_{group}"
            pooled = [x for v in mine.values() for x in v]
            out["satisfaction_ci" + tag], out["answers" + tag] = bootstrap_ci(pooled), len(pooled)
            if arm != "profile_prompt" and any(self._last_scores("profile_prompt", group).values()):
                out["delta_vs_profile_prompt" + tag] = self.paired_delta(arm, "profile_prompt", group)
        return out

    def paired_delta(self, arm: str, other: str, group: str | None = None) -> tuple[float, float, float]:
        """Mean satisfaction of ``arm`` minus ``other``'s on the same persona, seed and held-out prompt, with its
        95% bootstrap interval (the last session; runs of one arm without the other's are left out)."""
        mine, theirs = self._last_scores(arm, group), self._last_scores(other, group)
        a = [x for k in mine for x in mine[k][: len(theirs.get(k, []))]]
        b = [x for k in mine for x in theirs.get(k, [])[: len(mine[k])]]
        return paired_delta_ci(a, b)

    def markdown(self) -> str:
        c = self.config
        # the seeds that ran (an interrupted run may not have reached every seed it was asked for)
        ran = sorted({r.get("seed") for r in self.runs if r.get("seed") is not None}) or list(c.get("seeds") or [c["seed"]])
        f = lambda x: "–" if x is None or x != x else f"{x:.2f}"  # noqa: E731
        sign = lambda x: "–" if x is None or x != x else f"{x:+.2f}"  # noqa: E731
        lines = [
            f"## ASLS evaluation ({'quick' if c.get('quick') else 'full'}): {c['sessions']} sessions x "
            f"{c['turns']} turns, {c['heldout']} held-out prompts, seed(s) {', '.join(map(str, ran))}, model {c.get('model') or 'default'}",
            "",
            "Held-out satisfaction (mean persona score; an answer with any quality issue: empty, looping, "
            "refusing, off-topic, hollow, evasive, dropping the content or items asked for, no label picked, the "
            "input copied as its summary, an e-mail without its body, the task offered or announced instead of done, a text "
            "no shorter than the one to shorten, a citation with no surname first, a rework or extraction stating a fact "
            "its input lacks, Python code that fails the prompt's test cases or SQL that returns the wrong rows, not the "
            "right answer where the prompt has one (a fact, a label, a command), leaking the profile, not about its "
            "prompt, a learnt template, scores 0), "
            "after the last session. "
            f"Correctness: accuracy on {c.get('correctness') or 'all'} questions of the correctness set and "
            "its share of the base arm's; template share: held-out answers opening with the most common "
            "three words (Δ: minus the base arm's); leak: answers that talk about the user or the profile.",
            "",
            "| Arm | Final satisfaction | Δ vs base | Success | Quality pass | Edit cost S0→S_last | "
            "Retention ppl ratio | Correctness | Kept vs base | Template share (Δ base) | Leak |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in self.arm_summary():
            lines.append(f"| {s['arm']} | {f(s['final'])} | {sign(s['delta_vs_base'])} | {f(s['success'])} | "
                         f"{f(s['quality_pass'])} | {f(s['edit_cost_first'])} → {f(s['edit_cost_last'])} | "
                         f"{s['retention']:.3f} | {_helpful_cells(s)}")
        lines += ["", f"With 95% bootstrap intervals over the last session's held-out answers ({len(ran)} "
                  "seed(s)); Δ vs profile_prompt is paired by persona, seed and prompt:", ""]
        lines += [_interval_line(s) for s in self.arm_summary()]
        lines += ["", "Per persona:", "",
                  "| Arm | Persona | Satisfaction S0→S_last | Δ vs base | Quality pass | Edit cost held-out | "
                  "Edit cost chat S1→S_last | Words | Retention | Correctness | Kept vs base | "
                  "Template share (Δ base) | Leak |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows():
            chat = r["edit_cost_chat"]
            who = r["persona"] if len(ran) == 1 else f"{r['persona']} (seed {r['seed']})"
            lines.append(
                f"| {r['arm']} | {who} | {f(r['before'])} → {f(r['final'])} | {sign(r['delta_vs_base'])} | "
                f"{f(r['quality_pass'])} | {f(r['edit_cost_heldout'][0])} → {f(r['edit_cost_heldout'][1])} | "
                f"{(f(chat[0]) + ' → ' + f(chat[1])) if chat else 'not simulated'} | "
                f"{r['words'][0]:.0f} → {r['words'][1]:.0f} | {r['retention']:.3f} | {_helpful_cells(r)}")
        drift = [r for r in self.rows() if PERSONAS.get(r["persona"]) and PERSONAS[r["persona"]].drift_at]
        if drift:
            lines += ["", "Drift (preference switches at session "
                      f"{PERSONAS[drift[0]['persona']].drift_at}): sessions to recover", ""]
            lines += [f"- {r['arm']}: {r['recover'] if r['recover'] is not None else 'not recovered'}" for r in drift]
        lines += ["", "Curves (held-out satisfaction per session, S0 = before session 1):", ""]
        for r in self.runs:
            lines.append(f"- {r['arm']} / {r['persona']} / seed {r.get('seed')}: "
                         + " ".join(f(x) for x in self.curve(r["persona"], r["arm"], seed=r.get("seed"))))
        lines += ["", f"Wall time: {self.seconds:.0f} s; model generations: "
                  f"{sum(r['generations'] for r in self.runs)}."]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return to_jsonable({"config": self.config, "seconds": self.seconds, "runs": self.runs,
                          "summary": self.arm_summary()})

    @classmethod
    def load(cls, out_dir: Path) -> "EvalResult":
        """The result a run saved in ``out_dir`` (its results.json)."""
        data = json.loads((Path(out_dir) / "results.json").read_text(encoding="utf-8"))
        return cls(config=data["config"], runs=data["runs"], seconds=data.get("seconds", 0.0))

    @classmethod
    def combine(cls, results: list["EvalResult"]) -> "EvalResult":
        """One result from runs of the same settings with other seeds or personas (e.g. ``--seeds 0`` then
        ``--seeds 1,2``; the parts of ``--jobs``): its intervals pool every seed's answers. Refuses results whose
        settings differ beyond the seeds and personas, or that ran the same persona x arm x seed twice."""
        first = results[0].config
        parts = ("seeds", "seed", "personas")
        same = {k: v for k, v in first.items() if k not in parts}
        for r in results[1:]:
            other = {k: v for k, v in r.config.items() if k not in parts}
            if other != same:
                diff = sorted(k for k in set(same) | set(other) if same.get(k) != other.get(k))
                raise ASLSError(f"cannot combine eval results with different settings: {', '.join(diff)}")
        runs = [run for r in results for run in r.runs]
        keys = [(run["persona"], run["arm"], run.get("seed")) for run in runs]
        if len(set(keys)) != len(keys):
            raise ASLSError("cannot combine eval results that ran the same persona x arm x seed twice")
        seeds = sorted({s for r in results for s in r.config.get("seeds", [r.config.get("seed")])})
        personas = list(dict.fromkeys(p for r in results for p in r.config.get("personas", [])))
        config = dict(first, seeds=seeds, seed=seeds[0]) | ({"personas": personas} if personas else {})
        return cls(config=config, runs=runs, seconds=sum(r.seconds for r in results))

    def save(self, out_dir: Path, progress: Progress | None = None) -> list[Path]:
        """Write results.json, results.md and (with matplotlib) learning_curves.png to ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / "results.json", out_dir / "results.md"]
        paths[0].write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        paths[1].write_text(self.markdown(), encoding="utf-8")
        png = plot_curves(self, out_dir / "learning_curves.png", progress)
        return paths + ([png] if png else [])


def persona_group(name: str) -> str:
    """"open" for a persona whose preferences the profile has no feature for (learned only from edits and
    corrections), else "style"."""
    persona = PERSONAS.get(name)
    if persona is None:
        return "style"
    rules = persona.active_rules() + persona.active_rules(persona.drift_at)
    return "open" if all(r.profile is None for r in rules) else "style"


def update_decisions(run: dict) -> list[bool]:
    """The commit gate's decisions in a run, one per session update that trained: a session that left nothing to
    train on (no new pairs, or none the loss can use) is no decision, committed or rejected."""
    return [bool(s["training"]["committed"]) for s in run["sessions"] if s.get("training") and s["training"].get("steps")]


def commit_rate(run: dict) -> float | None:
    """Share of the run's trained session updates that the gate committed (None: nothing trained, or no training arm)."""
    decisions = update_decisions(run)
    return sum(decisions) / len(decisions) if decisions else None


@functools.lru_cache(maxsize=1)
def _correctness_items() -> dict:
    return {it.id: it for it in load_correctness_set()}


def _flips(mine: dict, base: dict) -> tuple:
    """(turned wrong, turned right) of a run's correctness answers against the base arm's: as recorded, else judged
    from both runs' stored answers (results recorded before the counts were); (None, None) when neither can."""
    if mine.get("turned_wrong") is not None:
        return mine["turned_wrong"], mine["turned_right"]
    if not mine.get("answers") or mine.get("ids") != base.get("ids") or not base.get("answers"):
        return None, None
    items = _correctness_items()
    if not all(i in items for i in mine["ids"]):
        return None, None
    return correctness_flips([items[i] for i in mine["ids"]], base["answers"], mine["answers"])


def _lowest_kept(rows: list[dict]) -> dict:
    """The persona whose runs keep the least of the base model's correctness, how much (mean over its seeds) and,
    where the answers tell, how many turned wrong and right with a one-sided sign test on them: a pooled mean over
    personas hides a user whose adapters forget (the follow-up user's 0.92 beside a concise user's 1.08 pooled to
    1.00), and a small model's fragile right answers churn either way (that 0.92 is 12 wrong, 7 right: p=0.18)."""
    by_persona: dict[str, list] = {}
    for r in rows:
        by_persona.setdefault(r["persona"], []).append(r["correctness_kept"])
    kept = {p: mean(v) for p, v in by_persona.items() if mean(v) == mean(v)}
    if len(kept) < 2:
        return {}
    persona = min(kept, key=kept.get)
    out = {"correctness_kept_lowest": kept[persona], "correctness_kept_lowest_persona": persona}
    flips = [r.get("correctness_flips") or (None, None) for r in rows if r["persona"] == persona]
    if flips and all(None not in f for f in flips):  # results recorded before the flips were: the ratio alone
        wrong, right = sum(f[0] for f in flips), sum(f[1] for f in flips)
        out["correctness_lowest_flips"] = [wrong, right, sign_test_p(wrong, right)]
    return out


def _ci(ci) -> str:
    return "–" if not ci or ci[0] != ci[0] else f"{ci[0]:.2f} [{ci[1]:.2f}, {ci[2]:.2f}]"


def _interval_line(summary: dict) -> str:
    """One arm's satisfaction (overall, style and open personas) and its paired Δ vs profile_prompt, with CIs."""
    parts = [f"satisfaction {_ci(summary.get('satisfaction_ci'))}"]
    for group in ("style", "open"):
        if summary.get(f"satisfaction_ci_{group}"):
            parts.append(f"{group} personas {_ci(summary[f'satisfaction_ci_{group}'])}")
    if summary.get("delta_vs_profile_prompt"):
        parts.append(f"Δ vs profile_prompt {_ci(summary['delta_vs_profile_prompt'])}")
    rate = summary.get("commit_rate")
    if rate is not None and rate == rate:
        decided = summary.get("updates_decided")
        parts.append(f"updates committed {rate:.0%}" + (f" (of {decided} that trained)" if decided else ""))
    lowest = summary.get("correctness_kept_lowest")
    if lowest is not None and summary["arm"] != "base":
        flips = summary.get("correctness_lowest_flips")
        tested = f", {flips[0]} turned wrong and {flips[1]} right, p={flips[2]:.2f}" if flips else ""
        parts.append(f"correctness kept {summary['correctness_kept']:.2f} "
                     f"(lowest: {summary['correctness_kept_lowest_persona']} {lowest:.2f}{tested})")
    precision, recall = summary.get("profile_precision"), summary.get("profile_recall")
    if precision is not None and precision == precision:
        parts.append(f"profile precision {precision:.2f}, recall {recall:.2f}")
    irrelevant = summary.get("irrelevant_rate")
    if irrelevant is not None and irrelevant == irrelevant:
        parts.append(f"irrelevant {irrelevant:.0%}")
    return f"- **{summary['arm']}**: " + "; ".join(parts)


def _num(x, fmt: str) -> str:
    return "–" if x is None or x != x else format(x, fmt)


def _helpful_cells(row: dict) -> str:
    """The helpfulness columns of a table row (see ``EvalResult.helpfulness``)."""
    return (f"{_num(row['correctness'], '.2f')} | {_num(row['correctness_kept'], '.2f')} | "
            f"{_num(row['template_share'], '.2f')} ({_num(row['template_delta'], '+.2f')}) | "
            f"{_num(row['leak_rate'], '.2f')} |")


def plot_curves(result: EvalResult, path: Path, progress: Progress | None = None) -> Path | None:
    """Held-out satisfaction and edit cost per session, one panel pair per persona, one line per arm."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if progress:
            progress("matplotlib is not installed: skipping plots (pip install matplotlib)")
        return None
    personas = list(dict.fromkeys(r["persona"] for r in result.runs))
    fig, axes = plt.subplots(2, len(personas), figsize=(4 * len(personas), 6), squeeze=False)
    for j, persona in enumerate(personas):
        for r in (r for r in result.runs if r["persona"] == persona):
            for i, key in enumerate(("satisfaction", "edit_cost")):
                ys = result.curve(persona, r["arm"], key)
                axes[i][j].plot(range(len(ys)), ys, marker="o", label=r["arm"])
        axes[0][j].set_title(persona)
        axes[0][j].set_ylim(-0.05, 1.05)
        axes[1][j].set_xlabel("session")
    axes[0][0].set_ylabel("held-out satisfaction")
    axes[1][0].set_ylabel("held-out edit cost")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
