"""Loading settings the transformers-based backends share: weight dtype and bitsandbytes quantization.

`param` names the backend's parameter in error messages (molmo2.dtype, videomolmo.quantization, ...).
"""

import torch

from videomolmo_ros.contracts.interfaces import BackendError


def resolve_dtype(name: str, device: torch.device, param: str) -> torch.dtype:
    """bfloat16 on GPU, float32 on CPU (CPUs without bf16 units run bf16 several times slower)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise BackendError(f"{param} {name!r}: use auto, {', '.join(dtypes)}")
    return dtypes[name]


def quantization_config(name: str, device: torch.device, param: str):
    """A bitsandbytes config for 4/8-bit weights, or None; refused where bitsandbytes cannot run."""
    if name == "none":
        return None
    if name not in ("4bit", "8bit"):
        raise BackendError(f"{param} {name!r}: use none, 4bit or 8bit")
    if device.type != "cuda":
        raise BackendError(f"{param} {name} needs a CUDA GPU (device is {device}); use none on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise BackendError(f"{param} {name} needs bitsandbytes: pip install bitsandbytes") from error
    from transformers import BitsAndBytesConfig

    if name == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)
