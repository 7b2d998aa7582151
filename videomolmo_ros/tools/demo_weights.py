"""The weights the demo's node will load: found, downloaded on first use where there is internet, or named. No ROS.

The node itself stops at start-up naming a missing checkpoint, but one at a time and only after
loading the other model; the demo checks every one first, so offline it stops at once with the
whole list. HF_HUB_OFFLINE=1 means no download of any kind.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from videomolmo_ros.contracts.interfaces import BackendError

NODE = "perception_node"


def node_parameters(files: Sequence[Path]) -> dict[str, object]:
    """The node's parameters from its params files, later files winning (as --params-file does)."""
    merged: dict[str, object] = {}
    for path in files:
        data = yaml.safe_load(Path(path).read_text()) or {}
        merged.update((data.get(NODE) or {}).get("ros__parameters") or {})
    return merged


def missing_weights(params: Mapping[str, object]) -> list[str]:
    """What to download, one message per model the parameters select that cannot be had here.

    Each is looked for as its backend looks for it at start-up (a local path, else the Hugging Face
    cache, else a download where there is a network), so the messages are the node's own.
    """
    problems = []
    if params.get("pointer_backend", "molmo2") == "molmo2" and not params.get("molmo2.server_url"):
        problems.append(_molmo2(params))
    if params.get("propagator_backend", "sam2") == "sam2":
        problems.append(_sam2(params))
    return [p for p in problems if p]


def _options(options_class: type, prefix: str, params: Mapping[str, object]):
    """The backend's options as the params files give them (other names are the node's to report)."""
    names = {f.name for f in dataclasses.fields(options_class)}
    given = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    return options_class(**{name: value for name, value in given.items() if name in names})


def _molmo2(params: Mapping[str, object]) -> str | None:
    """None when the checkpoint is a folder or in the Hugging Face cache (after downloading it, online)."""
    from huggingface_hub import snapshot_download

    from videomolmo_ros.backends.hub import offline_reason
    from videomolmo_ros.backends.molmo2.pointer import Molmo2Options, missing_checkpoint

    options = _options(Molmo2Options, "molmo2.", params)
    if Path(options.model).expanduser().is_dir():
        return None
    offline = offline_reason()
    try:
        snapshot_download(options.model, revision=options.revision or None, local_files_only=bool(offline))
    except Exception as error:  # the hub client raises many unrelated types (offline, not found, network)
        return str(missing_checkpoint(options.model, error, offline))
    return None


def _sam2(params: Mapping[str, object]) -> str | None:
    """None when the checkpoint is a local file or the hub id's file is cached (after downloading it, online)."""
    from videomolmo_ros.backends.sam2.loading import Sam2Options, checkpoint_path

    try:
        checkpoint_path(_options(Sam2Options, "sam2.", params))
    except BackendError as error:
        return str(error)
    return None
