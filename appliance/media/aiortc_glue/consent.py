"""ICE consent freshness (RFC 7675) that survives slow links.

aioice 0.13 sends each consent check once and gives it 0.5 s (`retransmissions=0` with its
500 ms RTO), and closes the connection after six failed checks in a row. On a path whose round
trip is longer than that (EDGE and GPRS: 650 ms and more, plus any queue) every check "fails",
so a patient on such a link was dropped about 30 s after connecting, however well media flowed.

`query_consent` replaces `aioice.ice.Connection.query_consent` with the RFC's rule: a check
every 4-6 s, retransmitted while unanswered (a late answer to any copy counts), and consent
lost only when no check has been answered for 30 s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aioice.ice
from aioice import stun

log = logging.getLogger(__name__)

#: A check every INTERVAL_S (randomised +-20%, as RFC 7675 asks).
INTERVAL_S = 5.0
#: Consent expires when no check was answered for this long (RFC 7675, section 5.1).
EXPIRY_S = 30.0
#: What `install()` replaces.
AIOICE_QUERY_CONSENT = aioice.ice.Connection.query_consent
#: Copies of an unanswered check: sent at 0, 0.5, 1.5 and 3.5 s, waited on until 7.5 s.
RETRANSMISSIONS = 3


async def query_consent(self: aioice.ice.Connection) -> None:
    """Check consent on every nominated pair until it expires, then close the connection."""
    assert self.remote_password is not None  # checks start only once connect() has it
    key = self.remote_password.encode("utf8")
    answered = time.monotonic()
    while True:
        await asyncio.sleep(INTERVAL_S * (0.8 + 0.4 * random.random()))
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(request, pair.remote_addr, integrity_key=key,
                                            retransmissions=RETRANSMISSIONS)
                answered = time.monotonic()
            except stun.TransactionError:
                pass
        if time.monotonic() - answered >= EXPIRY_S:
            log.info("ICE consent expired: no check answered for %.0f s", EXPIRY_S)
            self._query_consent_task = None
            await self.close()
            return


def install() -> None:
    """Use `query_consent` for every aioice connection of this process (idempotent)."""
    aioice.ice.Connection.query_consent = query_consent  # type: ignore[method-assign]
