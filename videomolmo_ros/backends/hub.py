"""Checkpoints from the Hugging Face hub: found in the cache, downloaded when there is a network.

On a machine with no network the hub client retries each request for minutes before it gives
up. One short connection attempt to the hub endpoint tells "no network" in seconds, so start-up
then looks only in the cache and fails at once with a message saying what to do.
"""

import re
import socket
from urllib.parse import urlsplit

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
PROBE_TIMEOUT_S = 3.0


def is_repo_id(text: str) -> bool:
    """`owner/name`, as hub repositories are named (a path like ~/models/x.pt is not one)."""
    return _REPO_ID.fullmatch(text) is not None and not text.endswith(".pt")


def offline_reason(timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """Why the hub cannot be reached ("" when it can): HF_HUB_OFFLINE, or one failed connection attempt."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline: HF_HUB_OFFLINE is set"
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout_s):
            return ""
    except OSError as error:
        return f"no network: {constants.ENDPOINT} did not answer ({error.strerror or error})"


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> str:
    """The local path of `filename` in `repo_id`: from the cache, else downloaded.

    Raises FileNotFoundError saying why (offline, not in the cache, no such file) when neither works.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id, filename, revision=revision, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    reason = offline_reason()
    if reason:
        raise FileNotFoundError(f"{reason}, and {repo_id}/{filename} is not in the Hugging Face cache")
    try:
        return hf_hub_download(repo_id, filename, revision=revision)
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise FileNotFoundError(f"{repo_id}/{filename} could not be downloaded: {error}") from error
