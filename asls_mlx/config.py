"""How the assistant answers and learns: :class:`AssistantConfig`, shared by the chat and the learning pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from asls_mlx.adaptation.lora import LoraConfig
from asls_mlx.adaptation.update import UpdateOptions
from asls_mlx.engine import SamplingOptions
from asls_mlx.errors import ASLSError

TRAIN_MODES = ("background", "wait", "next_start", "none")


@dataclass
class AssistantConfig:
    """How the assistant answers and learns. The defaults are the full ASLS system."""

    profile_in_prompt: bool = True  # profiling layer: the rendered profile joins the system prompt
    adapt: bool = True  # adaptation layer: train a LoRA adapter after sessions
    self_labelled: bool = True  # mine pairs by sampling answers and ranking them with the profile
    drift_adaptation: bool = True  # steps / lr / replay follow the profile's drift score
    loss: str = "dpo"  # dpo | simpo | orpo | sft
    pair_sources: frozenset | None = None  # train only on these pair sources (None: all)
    train_after_session: str = "background"  # background | wait | next_start | none
    train_budget_s: float = 30.0  # wall-clock budget of the training steps per session
    max_steps: int = 10  # per session; more makes a 135M model loop or refuse (docs/learning.md)
    lora_layers: int = 16  # adapt the last N transformer blocks (-1: all); fewer is faster to train
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy answers
    top_p: float = 0.95
    top_k: int = 256  # sampled answers come from the 256 most likely tokens (also keeps sampling fast)
    regenerate_temperature: float = 0.8  # a regenerated answer must differ, so it is sampled
    seed: int = 0
    self_labelled_prompts: int = 4  # past prompts re-answered per session for self-labelled pairs
    self_labelled_k: int = 4  # samples per prompt, ranked by the profile scorer
    self_labelled_max_tokens: int = 96
    system_prompt: str = "You are a helpful assistant."

    def __post_init__(self) -> None:
        if self.train_after_session not in TRAIN_MODES:
            raise ASLSError(f"train_after_session must be one of {', '.join(TRAIN_MODES)}, not {self.train_after_session!r}")
        if self.lora_layers == 0 or self.lora_layers < -1:
            raise ASLSError(f"lora_layers must be -1 (all blocks) or at least 1, not {self.lora_layers}")
        if self.loss not in ("dpo", "simpo", "orpo", "sft"):
            raise ASLSError(f"loss must be dpo, simpo, orpo or sft, not {self.loss!r}")

    def sampling(self, temperature: float | None = None, max_tokens: int | None = None, seed: int | None = None) -> SamplingOptions:
        """Sampling options of an answer; the arguments override the config's values."""
        return SamplingOptions(
            max_tokens=max_tokens or self.max_tokens,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed if seed is None else seed,
        )

    def update_options(self) -> UpdateOptions:
        """What one adapter update needs to know of this config."""
        return UpdateOptions(loss=self.loss, time_budget_s=self.train_budget_s, max_steps=self.max_steps,
                             drift_adaptation=self.drift_adaptation, seed=self.seed, sources=self.pair_sources,
                             lora=LoraConfig(num_layers=self.lora_layers))

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
        d = dict(self.__dict__)
        if d.get("pair_sources") is not None:
            d["pair_sources"] = sorted(d["pair_sources"])
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "AssistantConfig":
        data = dict(data)
        if data.get("pair_sources") is not None:
            data["pair_sources"] = frozenset(data["pair_sources"])
        return cls(**data)


__all__ = ["AssistantConfig", "TRAIN_MODES"]
