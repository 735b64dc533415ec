"""The box end of a synthetic call in the lab: one room, ClinicBox's SFU or stock relaying.

    python -m appliance.lab.callbox --mode clinicbox|stock --host 10.77.0.1 [--lan 10.77.0.2/32,...]

Run inside the lab's box host. Prints the TCP port it listens on, then answers line-JSON
requests from `appliance.lab.caller`:
`{"op": "join", "pid", "role", "sdp"}` -> `{"sdp"}` (or `{"error"}`).
The SFU is joined through `Rooms.join`, the same call `POST /api/media/offer` makes once the
join token is checked; the stock relay is `appliance.media.stock_relay.StockRelay`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

Join = Callable[[str, str, str], Awaitable[str]]


def _joiner(mode: str, lan: str) -> Join:
    if mode == "clinicbox":
        from appliance.media.adaptive import AdaptationSettings
        from appliance.media.locality import parse_networks
        from appliance.media.rooms import Rooms

        # The lab puts every host on one subnet: which are on the clinic LAN is said here.
        rooms = Rooms(AdaptationSettings(tuple(parse_networks(lan))))

        async def join(pid: str, role: str, sdp: str) -> str:
            return (await rooms.join("lab", pid, role, pid, sdp, "offer")).sdp
        return join
    if mode == "stock":
        from appliance.media import consent
        from appliance.media.stock_relay import StockRelay

        # The baseline gets the same consent fix as the SFU, or it would drop EDGE and GPRS
        # callers after 30 s: the comparison is about relaying.
        consent.install()
        relay = StockRelay()

        async def join_stock(pid: str, role: str, sdp: str) -> str:
            return await relay.join(pid, sdp)
        return join_stock
    raise SystemExit(f"unknown mode {mode!r}: clinicbox or stock")


async def serve(mode: str, host: str, lan: str = "") -> None:
    """Answer joins until killed (the lab stops this process when it closes)."""
    join = _joiner(mode, lan)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                msg = json.loads(line)
                if msg.get("op") == "join":
                    reply: dict[str, Any] = {
                        "sdp": await join(str(msg["pid"]), str(msg.get("role", "patient")),
                                          str(msg["sdp"]))}
                else:
                    reply = {"error": "unknown op"}
            except Exception as exc:  # a refused join goes back to the caller, not the log
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

    server = await asyncio.start_server(handle, host, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(24 * 3600)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Box end of a synthetic lab call.")
    parser.add_argument("--mode", required=True, choices=["clinicbox", "stock"])
    parser.add_argument("--host", required=True, help="address to listen on (the box host's)")
    parser.add_argument("--lan", default="", help="the clinic LAN's networks, comma-separated")
    args = parser.parse_args(argv)
    # Adaptation decisions at DEBUG (ids and rates only) when CLINICBOX_LAB_LOG=DEBUG.
    logging.basicConfig(level="WARNING", format="%(asctime)s %(message)s")
    logging.getLogger("appliance").setLevel(os.environ.get("CLINICBOX_LAB_LOG", "WARNING").upper())
    asyncio.run(serve(args.mode, args.host, args.lan))


if __name__ == "__main__":
    main()
