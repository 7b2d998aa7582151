"""A Hugging Face hub out of reach: an empty cache of the test's own, an endpoint on a closed local port,
and a record of every request the hub client sends anyway.

Without a network the hub client retries each request for minutes; backends probe the endpoint once
and then look only in the cache (videomolmo_ros/backends/hub.py). The record is taken where every
hub request passes (the client's session), so it sees the requests of transformers' loaders too.
A pytest plugin (test/conftest.py): tests take the `offline_hub` fixture.
"""

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class OfflineHub:
    cache: Path  # the empty hub cache the test may fill
    requests: list[str] = field(default_factory=list)  # URLs the hub client sent requests to

    def asked_for(self, repo_id: str) -> list[str]:
        """The requests for `repo_id`'s files or metadata. Not the others: huggingface_hub fetches its
        registry of AI agents (api/agent-harnesses, 3 s timeout, no retries) once per process when it
        first builds its headers, whichever test that happens in."""
        return [url for url in self.requests if repo_id in url]


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Iterator[OfflineHub]:
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils._http import default_client_factory

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hub = OfflineHub(tmp_path / "hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub.cache))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def record(request) -> None:
        hub.requests.append(str(request.url))

    def recording_client():
        client = default_client_factory()
        client.event_hooks = {**client.event_hooks, "request": [record, *client.event_hooks["request"]]}
        return client

    huggingface_hub.set_client_factory(recording_client)
    try:
        yield hub
    finally:
        huggingface_hub.set_client_factory(default_client_factory)
