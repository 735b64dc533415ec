"""The join-token key lives wrapped in the store's keyring: no file on the card can mint
tokens for the live box's calls."""

from __future__ import annotations

import asyncio
import json

from appliance.media.join_token import KEY_FILE, issue_join_token
from tests.media.conftest import Sfu
from tests.media.peer import Peer


def test_a_key_file_on_the_card_mints_nothing(sfu: Sfu) -> None:
    secrets_dir = sfu.box.settings.secrets_dir
    # A key file as older releases kept it (or as a thief would plant or read it).
    (secrets_dir / KEY_FILE).write_bytes(b"s" * 32)
    pid = sfu.admit("A")
    genuine = sfu.token(pid)
    assert not (secrets_dir / KEY_FILE).exists()
    keys = json.loads((secrets_dir / "store-keys.json").read_bytes())
    assert "join-token-key" in keys["secrets"]
    forged = issue_join_token(b"s" * 32, sfu.session_id, pid, "facilitator")

    async def scenario() -> tuple[int, int]:
        peer = Peer("a")
        try:
            offer = await peer.offer()
            loop = asyncio.get_running_loop()
            refused, _ = await loop.run_in_executor(
                None, sfu.post_offer, {**offer, "token": forged}
            )
            accepted, _ = await loop.run_in_executor(
                None, sfu.post_offer, {**offer, "token": genuine}
            )
            return refused, accepted
        finally:
            await peer.close()

    refused, accepted = asyncio.run(scenario())
    assert refused == 403
    assert accepted == 200
