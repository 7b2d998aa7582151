"""Which torch device the buffers and models live on."""

import torch


def resolve_device(spec: str) -> torch.device:
    """Turn a `device` parameter ("auto", "cpu", "cuda", "cuda:1") into a torch device.

    "auto" picks the first GPU when there is one, so the same config runs on a robot and on a
    laptop. Asking for CUDA where there is none is a configuration error, reported as such
    rather than as a failure deep inside the first model call.
    """
    spec = spec.strip().lower()
    if spec in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise ValueError(f"device {spec!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but torch sees no CUDA GPU (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
    return device
