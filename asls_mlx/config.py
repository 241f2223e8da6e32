"""How the assistant answers and learns: :class:`AssistantConfig`, shared by the chat and the learning pipeline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from asls_mlx.adaptation.config import LearningConfig, check_loss
from asls_mlx.adaptation.lora import LoraConfig
from asls_mlx.engine import SamplingOptions
from asls_mlx.errors import ASLSError
from asls_mlx.profiling.mining import LENGTH_PAIRS

TRAIN_MODES = ("background", "idle", "wait", "next_start", "none")
# background: a worker process starts when the session ends; idle: the same, but it waits until the user has not
# typed for ``train_idle_s`` and pauses whenever they are active again (both give way while an answer is written)
_LEARNING = LearningConfig()  # where the learning defaults live (see there why each is what it is)


@dataclass
class AssistantConfig:
    """How the assistant answers and learns. The defaults are the full ASLS system."""

    profile_in_prompt: bool = True  # profiling layer: the rendered profile joins the system prompt
    adapt: bool = True  # adaptation layer: train a LoRA adapter after sessions
    # Also mine pairs by sampling answers to the sessions' prompts and ranking them with the profile. Off: at 0.8 the
    # chosen samples are often nonsense no check can see ("Subject: *<<[Insert Your Email Here]..."), and the quick
    # eval without them (3 seeds) scored +0.05 [-0.01, +0.10] paired, committed 61% of updates (39% with them) and
    # kept 1.18 of the base model's correctness (1.05): benchmarks/results/eval-recipe-no-self-labelled/.
    self_labelled: bool = False
    # When the profile claims short answers, also mine "trim" pairs: an answer the user turned down (thumbs-down,
    # regenerated, corrected) and did not edit, cut to its opening sentences at the user's length, beats the
    # answer as it was (``profiling.trim``): the model's own words, only shorter, as the user's edits make them.
    # Off: the quick eval's concise user answered shorter and failed more tasks, paired -0.07 [-0.21, +0.06]
    # over 3 seeds (benchmarks/results/eval-recipe-length-pairs/).
    length_pairs: bool = LENGTH_PAIRS
    # Train and validate the pairs after the chat's configured system prompt (``LearningConfig.pair_system``) instead
    # of the tokenizer's default system turn, which the chat never sends. Off: it taught less on the quick eval,
    # paired -0.13 [-0.22, -0.04] over 3 seeds x 2 users (benchmarks/results/eval-recipe-pairs-in-chat-prompt/).
    pairs_in_chat_prompt: bool = False
    # The learning settings a user changes most; they set the matching fields of ``learning``.
    drift_adaptation: bool = _LEARNING.drift_adaptation  # steps / lr / replay follow the profile's drift score
    loss: str = _LEARNING.loss  # dpo | simpo | orpo | sft
    pair_sources: frozenset | None = _LEARNING.pair_sources  # train only on these pair sources (None: all)
    train_after_session: str = "background"  # background | idle | wait | next_start | none (see TRAIN_MODES)
    train_idle_s: float = 60.0  # idle mode: the update runs once the user has not typed for this long
    # The background update pauses while any answer is being written (False: it only runs at a lower OS priority;
    # benchmarks/chat_while_training.py --no-pause measures what each costs the chat and the update)
    yield_to_chat: bool = True
    # The wall-clock safety net of one update's training (``LearningConfig.time_limit_s``): the steps are
    # decided by the data; only a run still training after this many seconds stops early, and says so.
    train_time_limit_s: float = _LEARNING.time_limit_s
    # Deprecated name of ``train_time_limit_s`` (it was a budget that cut steps on a busy machine); when set,
    # it is the safety net, so code written for it keeps working.
    train_budget_s: float | None = None
    max_steps: int = _LEARNING.max_steps  # per session; more makes a 135M model loop or refuse
    lora_layers: int = _LEARNING.lora.num_layers  # adapt the last N transformer blocks (-1: all)
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy answers
    top_p: float = 0.95
    top_k: int = 256  # sampled answers come from the 256 most likely tokens (also keeps sampling fast)
    regenerate_temperature: float = 0.8  # a regenerated answer must differ, so it is sampled
    seed: int = 0
    self_labelled_prompts: int = 4  # past prompts re-answered per session for self-labelled pairs
    self_labelled_k: int = 4  # samples per prompt, ranked by the profile scorer
    self_labelled_max_tokens: int = 96
    # Samples must differ to be ranked, but a hotter sample is more often wrong (on the embedded model right
    # 0.45 greedy, 0.36 at 0.6, 0.26 at 0.8: benchmarks/sample_correctness.py) and a wrong one can win the rank;
    # yet 0.6 was no better on the quick eval (0.00 [-0.09, +0.09] paired, fewer commits:
    # benchmarks/results/eval-recipe-self-labelled-t06/).
    self_labelled_temperature: float = 0.8
    system_prompt: str = "You are a helpful assistant."
    # Everything else about learning (objective weights, replay, gate thresholds), defaults included.
    learning: LearningConfig = field(default_factory=LearningConfig)

    def __post_init__(self) -> None:
        if self.train_after_session not in TRAIN_MODES:
            raise ASLSError(f"train_after_session must be one of {', '.join(TRAIN_MODES)}, not {self.train_after_session!r}")
        if not 0 < self.train_idle_s < 86400:
            raise ASLSError(f"train_idle_s must be between 0 and 86400 seconds, not {self.train_idle_s}")
        if self.lora_layers == 0 or self.lora_layers < -1:
            raise ASLSError(f"lora_layers must be -1 (all blocks) or at least 1, not {self.lora_layers}")
        if not 0 < self.self_labelled_temperature <= 2:
            raise ASLSError("self_labelled_temperature must be above 0 (the samples are ranked, so they must differ) "
                            f"and at most 2, not {self.self_labelled_temperature}")
        check_loss(self.loss)
        self.learning = self.learning_config()

    def sampling(self, temperature: float | None = None, max_tokens: int | None = None, seed: int | None = None) -> SamplingOptions:
        """Sampling options of an answer; the arguments override the config's values."""
        return SamplingOptions(
            max_tokens=max_tokens or self.max_tokens,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed if seed is None else seed,
        )

    def learning_config(self) -> LearningConfig:
        """``learning`` with the shortcut fields (loss, max_steps, ...) applied: what an adapter update uses."""
        return replace(self.learning, loss=self.loss, time_limit_s=self.time_limit_s, max_steps=self.max_steps,
                       drift_adaptation=self.drift_adaptation, seed=self.seed, pair_sources=self.pair_sources,
                       lora=replace(self.learning.lora, num_layers=self.lora_layers),
                       pair_system=self.system_prompt if self.pairs_in_chat_prompt else self.learning.pair_system)

    @property
    def time_limit_s(self) -> float:
        """The safety net in force: ``train_budget_s`` (the old name) when set, else ``train_time_limit_s``."""
        return self.train_time_limit_s if self.train_budget_s is None else float(self.train_budget_s)

    def system_text(self, profile) -> str:
        """The system prompt of an answer: the configured one, plus the rendered profile when enabled."""
        text = self.system_prompt
        if self.profile_in_prompt:
            rendered = profile.render()
            if rendered:
                text += "\n" + rendered
        return text

    def to_dict(self) -> dict:
        """JSON-able (the background worker receives its config on the command line)."""
        d = asdict(self.learning_config())
        d["lora"]["keys"] = list(d["lora"]["keys"])
        data = {k: v for k, v in self.__dict__.items() if k != "learning"}
        data["learning"] = d
        for part in (data, d):
            if part.get("pair_sources") is not None:
                part["pair_sources"] = sorted(part["pair_sources"])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AssistantConfig":
        data = dict(data)
        learning = dict(data.pop("learning", None) or {})
        for part in (data, learning):
            if part.get("pair_sources") is not None:
                part["pair_sources"] = frozenset(part["pair_sources"])
        if "lora" in learning:
            learning["lora"] = LoraConfig(**dict(learning["lora"], keys=tuple(learning["lora"]["keys"])))
        return cls(**data, learning=LearningConfig(**learning))


__all__ = ["AssistantConfig", "TRAIN_MODES"]
