"""The weights the demo's node will load: found, downloaded on first use where there is internet, or named. No ROS.

The node itself stops at start-up naming a missing checkpoint, but one at a time and only after
loading the other model; the demo checks every one first, so offline it stops at once with the
whole list. HF_HUB_OFFLINE=1 means no download of any kind.
"""

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

NODE = "perception_node"


def node_parameters(files: Sequence[Path]) -> dict[str, object]:
    """The node's parameters from its params files, later files winning (as --params-file does)."""
    merged: dict[str, object] = {}
    for path in files:
        data = yaml.safe_load(Path(path).read_text()) or {}
        merged.update((data.get(NODE) or {}).get("ros__parameters") or {})
    return merged


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def missing_weights(params: Mapping[str, object]) -> list[str]:
    """What to download, one message per model the parameters select that cannot be had here."""
    problems = []
    if params.get("pointer_backend", "molmo2") == "molmo2" and not params.get("molmo2.server_url"):
        problems.append(_molmo2(str(params.get("molmo2.model", "")), str(params.get("molmo2.revision", ""))))
    if params.get("propagator_backend", "sam2") == "sam2":
        problems.append(_sam2(str(params.get("sam2.config", "tiny")), str(params.get("sam2.checkpoint", ""))))
    return [p for p in problems if p]


def _molmo2(model: str, revision: str) -> str | None:
    """None when the checkpoint is a folder or in the Hugging Face cache (after downloading it, online)."""
    if Path(model).expanduser().is_dir():
        return None
    from huggingface_hub import snapshot_download

    from videomolmo_ros.backends.molmo2.pointer import missing_checkpoint

    try:
        snapshot_download(model, revision=revision or None, local_files_only=offline())
    except Exception as error:  # the hub client raises many unrelated types (offline, not found, network)
        return str(missing_checkpoint(model, error))
    return None


def _sam2(config: str, checkpoint: str) -> str | None:
    """None when the checkpoint file is there (after downloading Meta's release file, online)."""
    from videomolmo_ros.backends.sam2.loading import RELEASE_URL, Sam2Options, checkpoint_file, missing_checkpoint

    path = Path(checkpoint).expanduser()
    if checkpoint and path.is_file():
        return None
    message = str(missing_checkpoint(Sam2Options(config=config, checkpoint=checkpoint)))
    if offline() or not checkpoint:
        return message
    url = RELEASE_URL + checkpoint_file(config)
    print(f"downloading {url} -> {path}")
    partial = path.with_suffix(path.suffix + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as file:
            shutil.copyfileobj(response, file)
        partial.rename(path)
    except (OSError, urllib.error.URLError) as error:
        partial.unlink(missing_ok=True)
        return f"{message} (download failed: {error})"
    return None
