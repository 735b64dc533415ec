"""Ask a TURN server for an allocation of one address family, then for a permission to each
peer, and print what it answered (JSON): `{"relayed": [host, port], "peers": {peer: "ok" or
error code}}`.

aioice never asks for an IPv6 relay, so the request carries RFC 6156's
REQUESTED-ADDRESS-FAMILY here. Run in the namespace that reaches the server:

    python -m tests.relay.turn_peer_probe HOST PORT USERNAME PASSWORD {4|6} PEER...
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys

from aioice import stun, turn

FAMILY_ATTRIBUTE = (
    0x0017,
    "REQUESTED-ADDRESS-FAMILY",
    lambda family: struct.pack("!B3x", family),
    lambda data: data[0],
)
stun.ATTRIBUTES_BY_TYPE[FAMILY_ATTRIBUTE[0]] = FAMILY_ATTRIBUTE
stun.ATTRIBUTES_BY_NAME[FAMILY_ATTRIBUTE[1]] = FAMILY_ATTRIBUTE


async def probe(
    host: str, port: int, username: str, password: str, family: int, peers: list[str]
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    server = (host, port)
    transport, client = await loop.create_datagram_endpoint(
        lambda: turn.TurnClientUdpProtocol(
            server, username=username, password=password, lifetime=60, channel_refresh_time=50
        ),
        remote_addr=server,
    )
    try:
        allocate = stun.Message(
            message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST
        )
        allocate.attributes["LIFETIME"] = 60
        allocate.attributes["REQUESTED-TRANSPORT"] = turn.UDP_TRANSPORT
        allocate.attributes["REQUESTED-ADDRESS-FAMILY"] = 1 if family == 4 else 2
        answer, _ = await client.request_with_retry(allocate)
        result: dict[str, object] = {"relayed": answer.attributes["XOR-RELAYED-ADDRESS"]}
        verdicts: dict[str, object] = {}
        for peer in peers:
            request = stun.Message(
                message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
            )
            request.attributes["XOR-PEER-ADDRESS"] = (peer, 9)
            try:
                await client.request_with_retry(request)
                verdicts[peer] = "ok"
            except stun.TransactionFailed as exc:
                verdicts[peer] = exc.response.attributes["ERROR-CODE"][0]
        result["peers"] = verdicts
        return result
    finally:
        transport.close()


def main() -> None:
    host, port, username, password, family, *peers = sys.argv[1:]
    print(json.dumps(asyncio.run(probe(host, int(port), username, password, int(family), peers))))


if __name__ == "__main__":
    main()
