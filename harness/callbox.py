"""The box end of a synthetic call in the lab: one room, ClinicBox's SFU or stock relaying.

    python -m harness.callbox --mode clinicbox|stock --host 10.77.0.1 [--lan 10.77.0.2/32,...]

Run inside the lab's box host. Prints the TCP port it listens on, then answers line-JSON
requests from `harness.caller`:
`{"op": "join", "pid", "role", "sdp"}` -> `{"sdp"}` (or `{"error"}`).
The SFU is joined through `Rooms.join`, the same call `POST /api/media/offer` makes once the
join token is checked; the stock relay is `harness.stock_relay.StockRelay`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Join = Callable[[str, str, str, str], Awaitable[str]]


def _joiner(mode: str, lan: str, turn_from: Path | None = None) -> Join:
    if mode == "clinicbox":
        from appliance.media.adaptive import AdaptationSettings
        from appliance.media.locality import is_lan, parse_networks
        from appliance.media.rooms import Rooms
        from appliance.media.turn import TurnGrant, load_service

        # The lab puts every host on one subnet: which are on the clinic LAN is said here.
        networks = tuple(parse_networks(lan))
        rooms = Rooms(AdaptationSettings(networks))
        service = load_service(turn_from) if turn_from is not None else None

        async def join(pid: str, role: str, sdp: str, peer: str = "") -> str:
            # As web.remote_seat does for the portal: only a seat from outside the LAN gets TURN.
            grant = None
            if service is not None and not is_lan(peer, networks):
                grant = TurnGrant(service, pid, time.time() + 3600)
            return (await rooms.join("lab", pid, role, pid, sdp, "offer", turn=grant)).sdp
        return join
    if mode == "stock":
        from appliance.media.aiortc_glue import consent
        from harness.stock_relay import StockRelay

        # The baseline gets the same consent fix as the SFU, or it would drop EDGE and GPRS
        # callers after 30 s: the comparison is about relaying.
        consent.install()
        relay = StockRelay()

        async def join_stock(pid: str, role: str, sdp: str, peer: str = "") -> str:
            return await relay.join(pid, sdp)
        return join_stock
    raise SystemExit(f"unknown mode {mode!r}: clinicbox or stock")


async def serve(mode: str, host: str, lan: str = "", port: int = 0,
                turn_from: Path | None = None) -> None:
    """Answer joins until killed (the lab stops this process when it closes)."""
    join = _joiner(mode, lan, turn_from)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        while line := await reader.readline():
            try:
                msg = json.loads(line)
                if msg.get("op") == "join":
                    reply: dict[str, Any] = {
                        "sdp": await join(str(msg["pid"]), str(msg.get("role", "patient")),
                                          str(msg["sdp"]), peer)}
                else:
                    reply = {"error": "unknown op"}
            except Exception as exc:  # a refused join goes back to the caller, not the log
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

    server = await asyncio.start_server(handle, host, port)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(24 * 3600)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Box end of a synthetic lab call.")
    parser.add_argument("--mode", required=True, choices=["clinicbox", "stock"])
    parser.add_argument("--host", required=True, help="address to listen on (the box host's)")
    parser.add_argument("--lan", default="", help="the clinic LAN's networks, comma-separated")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    parser.add_argument("--turn-from", type=Path, default=None,
                        help="the box's data dir holding the centre's TURN service: seats "
                             "from outside --lan get relay candidates")
    args = parser.parse_args(argv)
    # Adaptation decisions at DEBUG (ids and rates only) when CLINICBOX_LAB_LOG=DEBUG.
    logging.basicConfig(level="WARNING", format="%(asctime)s %(message)s")
    logging.getLogger("appliance").setLevel(os.environ.get("CLINICBOX_LAB_LOG", "WARNING").upper())
    asyncio.run(serve(args.mode, args.host, args.lan, args.port, args.turn_from))


if __name__ == "__main__":
    main()
