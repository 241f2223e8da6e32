"""Every default of learning from a session, in one place: :class:`LearningConfig`.

The arguments of one ``trainer.train`` call (:class:`TrainingArgs`) take their defaults from it, and
``LearningConfig.training_args`` turns a session's schedule (``adapt_schedule``: how many steps, at which
learning rate, with how much replay) into them. The main risk of learning from a handful of pairs is
over-optimisation: 10 DPO steps took a 135M model from 0% to 92% compliance with a persona, 20 steps made
it refuse and loop. So the defaults are conservative: few steps, few passes over the same pairs, an SFT
term on the chosen answers, a KL term to the base model on general text, and a gate before any commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from asls_mlx.adaptation.lora import LoraConfig
from asls_mlx.errors import ASLSError

LOSS_NAMES = ("dpo", "simpo", "orpo", "sft")  # the keys of ``losses.LOSSES``
# Task anchors (``LearningConfig.task_anchors``): the base model's answer budget, and the retention rows' length
# that holds the chat template, the task and that answer (the 12 anchors take 71-133 tokens).
TASK_ANSWER_TOKENS = 96
TASK_ANCHOR_ROW = 160


def check_loss(name: str) -> None:
    """Raise ``ASLSError`` unless ``name`` is a known training loss."""
    if name not in LOSS_NAMES:
        raise ASLSError(f"Unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}.")


@dataclass
class LearningConfig:
    """How a session's pairs become an adapter update: the objective, how hard to train, what the gate demands."""

    # The preference objective: DPO learns from the margin over the base model, which keeps the adapter
    # close to it; simpo / orpo need no reference pass; sft only imitates the chosen answers.
    loss: str = "dpo"
    # DPO / ORPO beta: the higher, the less the adapter may move away from the base model.
    beta: float = 0.1
    # SimPO's reward scale on length-normalised log-probs and its target margin (the paper's range).
    simpo_beta: float = 2.0
    simpo_gamma: float = 0.5
    # Weight of the NLL of the chosen answers next to the preference term: keeps the answers fluent.
    sft_weight: float = 0.2
    # The SFT term imitates only the line the user added to the answer (``sft_target``): a closing question after
    # the answer's head (the shared head goes into the context; DPO's log-ratios of a shared head cancel), or an
    # "In short:" line before it (the SFT term reads that line's tokens alone; the preference sees both answers
    # whole). That line is then the whole likelihood target instead of ~15 of ~100 tokens; a rewrite keeps its
    # whole text. Quick eval, 3 seeds: the follow-up user 0.14 [0.03, 0.25] instead of 0.03, the concise user's runs
    # unchanged, 82% of 17 updates committed instead of 76%, +0.06 [+0.00, +0.12] paired
    # (benchmarks/results/eval-recipe-sft-on-line/); the "In short:" user -0.01 [-0.14, +0.10] (8 of 36 answers open
    # with the line instead of 3; eval-recipe-sft-on-line-in-short/). Moving the head for every pair that goes on
    # past it had cost the concise user, whose edits rewrite, -0.13 (eval-recipe-sft-on-change/).
    sft_on_change: bool = True
    # The system turn the pairs are trained and validated with (None: the tokenizer's default one; SmolLM2's is
    # "You are a helpful AI assistant named SmolLM, trained by Hugging Face", which the chat never sends).
    # ``AssistantConfig.pairs_in_chat_prompt`` sets it to the chat's configured system prompt.
    pair_system: str | None = None
    # Weight of KL(base || adapted) on the retention texts (general text, and the task anchors below): the adapter
    # may not forget how to write in general, nor how to finish a task. 2.0 with the task anchors (measured
    # together, below); 0.5 before them, and 2.0 without them kept a concise user's update cutting lists short.
    retention_weight: float = 2.0
    # General texts in each step's retention term, tokens kept of each, and base next-token
    # probabilities stored per position (a top-k lower bound of the KL needs only these).
    retention_texts_per_step: int = 2
    retention_length: int = 64
    retention_topk: int = 32
    # The retention term also holds the base model's own greedy answers to everyday questions, in the chat's
    # format, one per step beside a general text (``asls_mlx.adaptation.anchors``): prose alone did not keep third
    # sessions from answering fixed questions wrong. Off: +0.05 over the old default (self-labelled pairs on) in two
    # quick evals, +0.02 [-0.06, +0.11] over today's (benchmarks/results/eval-recipe-anchors-no-self-labelled/).
    answer_anchors: bool = False
    # The retention term also holds the base model's whole answers (``TASK_ANSWER_TOKENS``) to 12 short tasks: list
    # two to five things, summarise, extract, classify (``data/task_anchors.jsonl``, none of them a task probe), one
    # per step beside a general text; rows are then at least ``TASK_ANCHOR_ROW`` tokens long, to hold a list's end.
    # A concise user's first update (benchmarks/update_replay.py, the quick eval's seed 2) cut three of the gate's
    # lists short with the old retention; with these anchors and retention_weight 2, one, and its held-out answers
    # fit as well (5 of 12); weight 2 without them still cut three. On (with weight 2): quick eval, 3 seeds, the same
    # users and feedback, 59% of 17 updates committed instead of 29%, quality pass 0.92 vs 0.88 (base 0.92),
    # satisfaction 0.39 vs 0.37, paired +0.02 [-0.04, +0.08], correctness kept 1.08 as before
    # (benchmarks/results/eval-recipe-task-anchors/).
    task_anchors: bool = True
    # The first this-many answer tokens of each anchor (after the chat's assistant header) are left out of the
    # retention term: the anchors then hold how a task is finished, not how its answer opens. Off: on the "In short:"
    # user (quick eval, 3 seeds) 8 free tokens taught the opening no faster (6 of 36 answers either way) and half the
    # updates were turned down instead of 1 in 8; satisfaction -0.06 [-0.15, +0.01] paired
    # (benchmarks/results/eval-recipe-anchor-free-opening/).
    anchor_free_opening: int = 0
    # The commit gate also asks 12 short tasks (summarise a pasted note, list three things, extract, classify:
    # ``data/task_probes.jsonl``) and counts an answer that fails the task checks as a wrong probe answer: after one
    # session a concise user's adapter read a paragraph back as its "summary" and cut a list of seven to two items,
    # though its chats held no summary or list. On: quick eval, 3 seeds, satisfaction +0.09 [+0.01, +0.17] paired
    # over the gate without them, +0.11 [+0.03, +0.20] over profile-in-prompt, quality pass 0.88 vs 0.82; but it
    # commits 35% of updates instead of 69% (benchmarks/results/eval-recipe-task-probes/).
    task_probes: bool = True
    # AdamW learning rate at full signal; good at LoRA rank 8, scale 20 (lora.LoraConfig).
    base_lr: float = 2e-4
    # No decay: the adapter is small and starts at identity; pairs are few.
    weight_decay: float = 0.0
    # A later session starts AdamW's moments afresh and keeps only the global step (False), or continues the
    # previous version's moments (True). MLX's AdamW has no bias correction (the step count enters nothing but
    # the batch order), and a carried first moment re-applies the last session's direction: after a 3-step
    # session, about as far again as that session moved, on top of its replayed pairs. Quick eval, 3 seeds x 2
    # users: second sessions continuing an adapter committed 5 of 5 fresh vs 2 of 5 carried; all 65% vs 50%;
    # satisfaction +0.03 [-0.07, +0.13] paired (benchmarks/results/eval-recipe-fresh-moments/).
    resume_moments: bool = False
    # The learning rate falls with the steps the continued adapter has already taken:
    # x sqrt(S / (S + steps so far)) for S = this (None: no decay). Off: at S = 4 the quick eval committed as
    # many updates (67% vs 65%) and learnt less from them (satisfaction -0.10 [-0.19, -0.01] paired,
    # benchmarks/results/eval-recipe-lr-decay/).
    lr_decay_steps: float | None = None
    # Steps per session at full signal: 10 DPO steps helped a 135M model, 20 made it refuse.
    max_steps: int = 10
    # No session trains more steps than this, whatever max_steps says (the same over-training limit).
    max_steps_cap: int = 12
    # Passes over the session's examples: a 10-turn session gives ~3 DPO pairs, and a 4th and 5th pass
    # over them raises general-text perplexity 1.015x -> 1.108x and makes the answers fit the user worse
    # (profile fit 0.83 -> 0.64). None: no cap.
    max_epochs: float | None = 3.0
    # A safety net, not a budget: how many steps a session trains is decided by its data (``schedule``,
    # ``max_steps``, ``max_epochs``), so an idle and a busy machine train the same steps and the gate
    # decides the same. Only a run still training this many wall-clock seconds after it started
    # (preparation included) stops early, and says so (``stop_note``). 600 s: 12 steps of the embedded
    # model take ~25 s idle, and 390 s when two processes fought over 2 cores (a DPO step 32.5 s).
    time_limit_s: float = 600.0
    # Pairs per step; shapes are bucketed, so a step compiles for few distinct batch shapes.
    batch_size: int = 4
    # Share of the training pool drawn from older pairs when the profile is stable (adapt_schedule
    # lowers it as the profile drifts: old pairs then matter less). Replay keeps old lessons.
    replay_fraction: float = 0.5
    # Older pairs eligible for replay in one session.
    replay_pool: int = 64
    # Tokens of prompt + answer per example (the prompt's tail and the answer's head are kept).
    max_length: int = 256
    # Seeds replay sampling and the batch order.
    seed: int = 0
    # Global gradient-norm clip: one odd pair must not move the adapter far.
    grad_clip: float = 1.0
    # A loss above this factor x the first loss (+1) counts as diverged: the step's weights are dropped.
    divergence_factor: float = 4.0
    # Steps, learning rate and replay follow the profile's drift (adapt_schedule); False: full signal.
    drift_adaptation: bool = True
    # The user's prompts answered greedily by the old and the new adapter before a commit.
    quality_prompts: int = 6
    # The new adapter's answers may fit the profile at most this much worse than the old one's.
    min_score_gain: float = -0.02
    # General-text perplexity may rise at most 10% (adapted / base).
    retention_bound: float = 1.10
    # The adapter's layout for a user's first adapter (a later one keeps the layout of the one it continues).
    lora: LoraConfig = field(default_factory=LoraConfig)
    # An update the gate rejects (not a diverged one) is tried once more scaled down: adapter weights old + this x
    # (trained - old), judged by the whole gate afresh. A session's one to three pairs can move the embedded model
    # too far in three steps (the follow-up user's first update then answered "What language is spoken in Brazil?"
    # in Portuguese), while less of the same move may be both safe and a lesson. None: no second try. On, with the
    # task anchors and probes: the quick eval (3 seeds, the same users and feedback) committed 76% of 17 updates
    # instead of 59%, satisfaction +0.01 [+0.00, +0.04] paired, correctness kept 1.00 (base 1.00; 1.08 without it)
    # (benchmarks/results/eval-recipe-retry-scale-anchors/). Before the anchors it committed 71% instead of 29% and
    # scored -0.03 [-0.10, +0.03] (eval-recipe-retry-scale/). A second try costs a second gate pass (~40 s).
    retry_scale: float | None = 0.5
    # Train only on pairs from these sources (ablations); None: all.
    pair_sources: frozenset | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ASLSError`` with the reason when a value cannot work (an unknown loss)."""
        check_loss(self.loss)
        if self.retry_scale is not None and not 0.0 < self.retry_scale < 1.0:
            raise ASLSError(f"retry_scale is {self.retry_scale}: use a share of the update between 0 and 1 "
                            "(0.5: half of it), or None for no second try.")

    def schedule(self, n_new_pairs: int, drift: float = 0.0) -> tuple[int, float, float]:
        """``adapt_schedule`` with this config's limits (drift ignored unless ``drift_adaptation``)."""
        drift = drift if self.drift_adaptation else 0.0
        return adapt_schedule(n_new_pairs, drift, self.base_lr, self.max_steps, self.max_steps_cap, self.replay_fraction)

    def continued_lr(self, lr: float, prior_steps: int) -> float:
        """``lr`` for an adapter that has already taken ``prior_steps`` steps (``lr_decay_steps``)."""
        if not self.lr_decay_steps or prior_steps <= 0:
            return lr
        return lr * (self.lr_decay_steps / (self.lr_decay_steps + prior_steps)) ** 0.5

    def retention_row(self) -> int:
        """Tokens kept of each retention text: ``retention_length``, or a task anchor's whole answer when they are on."""
        return max(self.retention_length, TASK_ANCHOR_ROW) if self.task_anchors else self.retention_length

    def training_args(self, max_steps: int | None = None, lr: float | None = None,
                      replay_fraction: float | None = None) -> TrainingArgs:
        """The ``TrainingArgs`` of one session: this config's values, with the schedule's steps, lr and replay."""
        shared = {f.name: getattr(self, f.name) for f in fields(TrainingArgs) if hasattr(self, f.name)}
        shared["lr"] = self.base_lr if lr is None else lr
        shared["retention_length"] = self.retention_row()
        if max_steps is not None:
            shared["max_steps"] = max_steps
        if replay_fraction is not None:
            shared["replay_fraction"] = replay_fraction
        return TrainingArgs(**shared)


_DEFAULT = LearningConfig()


@dataclass
class TrainingArgs:
    """The arguments of one ``trainer.train`` call; the defaults are ``LearningConfig``'s (see there why)."""

    loss: str = _DEFAULT.loss
    beta: float = _DEFAULT.beta
    simpo_beta: float = _DEFAULT.simpo_beta
    simpo_gamma: float = _DEFAULT.simpo_gamma
    sft_weight: float = _DEFAULT.sft_weight
    sft_on_change: bool = _DEFAULT.sft_on_change
    pair_system: str | None = _DEFAULT.pair_system
    retention_weight: float = _DEFAULT.retention_weight
    retention_texts_per_step: int = _DEFAULT.retention_texts_per_step
    retention_length: int = _DEFAULT.retention_row()
    retention_topk: int = _DEFAULT.retention_topk
    anchor_free_opening: int = _DEFAULT.anchor_free_opening
    lr: float = _DEFAULT.base_lr
    weight_decay: float = _DEFAULT.weight_decay
    resume_moments: bool = _DEFAULT.resume_moments
    max_steps: int = _DEFAULT.max_steps
    max_epochs: float | None = _DEFAULT.max_epochs
    time_limit_s: float = _DEFAULT.time_limit_s
    batch_size: int = _DEFAULT.batch_size
    replay_fraction: float = _DEFAULT.replay_fraction
    max_length: int = _DEFAULT.max_length
    seed: int = _DEFAULT.seed
    grad_clip: float = _DEFAULT.grad_clip
    divergence_factor: float = _DEFAULT.divergence_factor
    compile: bool = True  # mx.compile the whole step: the same numbers, faster

    def __post_init__(self) -> None:
        check_loss(self.loss)


def adapt_schedule(
    n_new_pairs: int,
    drift: float = 0.0,
    base_lr: float = _DEFAULT.base_lr,
    max_steps: int = _DEFAULT.max_steps,
    cap: int = _DEFAULT.max_steps_cap,
    replay_fraction: float = _DEFAULT.replay_fraction,
) -> tuple[int, float, float]:
    """How hard to train this session: ``(steps, lr, replay_fraction)``.

    1) signal = more new pairs (saturating at 32) or more profile drift (0..1) -> in [0, 1];
    2) steps grow 3 -> ``max_steps`` with the signal (0 without new pairs), never above ``cap``;
    3) lr grows 0.5x -> 1x ``base_lr`` (never above it);
    4) replay falls ``replay_fraction`` -> ``replay_fraction - 0.3`` with drift: old pairs matter
       less when the user's taste moved.
    """
    if n_new_pairs <= 0:
        return 0, 0.0, 0.0
    drift = min(max(float(drift), 0.0), 1.0)
    signal = max(min(n_new_pairs / 32.0, 1.0), drift)
    steps = int(round(3 + (max_steps - 3) * signal))
    steps = max(1, min(steps, max_steps, cap))
    lr = base_lr * (0.5 + 0.5 * signal)
    replay = replay_fraction - 0.3 * drift
    return steps, lr, replay


STOP_TIME_LIMIT = "time_limit"  # TrainResult.stopped_reason when the wall-clock safety net ended the steps


def stop_note(stopped: str | None, steps: int, planned: int | None) -> str:
    """What a run's stop reason means for its steps, in words ("" when the data decided them): e.g.
    "stopped by the wall-clock safety net after 3 of 10 steps"."""
    if stopped != STOP_TIME_LIMIT:
        return ""
    of = f" of {planned}" if planned else ""
    return f"stopped by the wall-clock safety net after {steps}{of} steps"


__all__ = ["LOSS_NAMES", "LearningConfig", "STOP_TIME_LIMIT", "TrainingArgs", "adapt_schedule", "check_loss", "stop_note"]
