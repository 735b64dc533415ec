"""The box's outbound tunnel to its centre: how remote patients reach a box behind NAT.

A claimed box keeps one TLS connection to the centre's port, pinned like sync (the centre's
TLS key from the claim; no CA, no host-name check) and opened with a device-signed
`GET /v1/tunnel` (timestamp and nonce: a replay is refused). After `101 Switching
Protocols` the connection carries frames (`sync.protocol.tunnel_frames`): the centre sends
each relayed patient request as a stream, the box serves it with its own portal app
(`relayed_requests`) and streams the answer back.

Costs and behaviour on a clinic uplink:
- idle, one PING and its PONG every `keepalive_s` (60 s): a few hundred bytes a minute with
  TCP and TLS framing; no polling;
- a PONG missing `pong_timeout_s` after a PING, or a read error, ends the connection;
  reconnects back off exponentially with jitter (`uniform(d/2, d)`, d from 1 s to 60 s),
  and a refusal (not enabled for the relay, unknown device) waits up to 10 minutes;
- it runs on its own thread with its own asyncio loop, so neither the media loop nor the
  WSGI threads wait on the uplink. Relayed requests run on a small thread pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.files import write_private
from appliance.identity import DeviceIdentity
from sync.agent.claim import CentralLink
from sync.agent.relayed_requests import (
    MAX_BODY,
    BadRelayedRequest,
    WsgiAnswer,
    relayed_environ,
)
from sync.agent.transport import PinMismatch, PinnedCentre
from sync.protocol.signing import sign_request
from sync.protocol.tunnel_frames import (
    TUNNEL_PATH,
    UPGRADE_TOKEN,
    Frame,
    FrameError,
    FrameReader,
    FrameType,
    encode,
    encode_data,
    encode_json,
)

log = logging.getLogger(__name__)

MAX_ANSWER_HEAD = 16 * 1024


class TunnelRefused(Exception):
    """The centre answered the tunnel request with a 4xx: waiting longer will not help soon."""


class TunnelBroken(Exception):
    """The connection failed or went silent: reconnect after a backoff."""


@dataclass
class TunnelConfig:
    """Tunnel tuning; each field can be set with CLINICBOX_TUNNEL_<FIELD> (upper case)."""

    connect_timeout_s: float = 10.0
    keepalive_s: float = 60.0
    pong_timeout_s: float = 20.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    refused_backoff_s: float = 600.0
    workers: int = 8

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> TunnelConfig:
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CLINICBOX_TUNNEL_{f.name.upper()}")
            if raw is None:
                continue
            kind = int if f.type in ("int", int) else float
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"CLINICBOX_TUNNEL_{f.name.upper()} must be a number") from None
            if values[f.name] <= 0:
                raise ValueError(f"CLINICBOX_TUNNEL_{f.name.upper()} must be above 0")
        return cls(**values)


@dataclass
class TunnelState:
    """What the technician page and tests read: is the tunnel up, and where do patients go."""

    connected: bool = False
    public_url: str | None = None
    connects: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.time)


def relay_state_file(data_dir: Path) -> Path:
    return data_dir / "state" / "relay.json"


def saved_public_url(data_dir: Path) -> str | None:
    """The patients' address the centre last gave this box (kept across restarts)."""
    try:
        value = json.loads(relay_state_file(data_dir).read_text()).get("public_url")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


class TunnelClient:
    """Keeps the tunnel up until `stop`; serves relayed requests with `app`."""

    def __init__(
        self,
        link_source: Callable[[], CentralLink | None],
        identity: DeviceIdentity,
        app: Any,
        data_dir: Path,
        config: TunnelConfig | None = None,
    ) -> None:
        self.link_source = link_source
        self.identity = identity
        self.app = app
        self.data_dir = data_dir
        self.config = config or TunnelConfig.from_env()
        self.state = TunnelState(public_url=saved_public_url(data_dir))
        self.context = PinnedCentre.tls_context()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="rt-tunnel", daemon=True)
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="rt-relayed")
        self._main: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._cancelled: set[int] = set()
        self._failures = 0

    # Life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return

        def cancel() -> None:
            if self._main is not None:
                self._main.cancel()

        self._loop.call_soon_threadsafe(cancel)
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._main = self._loop.create_task(self._keep_up())
        try:
            self._loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    async def _keep_up(self) -> None:
        while True:
            link = self.link_source()
            if link is None:  # not claimed (yet): a local file check, no traffic
                await asyncio.sleep(5.0)
                continue
            started = time.monotonic()
            try:
                await self._connect_and_serve(link)
                wait = self._backoff()
            except TunnelRefused as exc:
                self.state.last_error = str(exc)[:200]
                log.warning("tunnel refused by the centre: %s", exc)
                wait = random.uniform(
                    self.config.refused_backoff_s / 2, self.config.refused_backoff_s
                )
            except (TimeoutError, TunnelBroken, FrameError, OSError) as exc:
                self.state.last_error = (str(exc) or exc.__class__.__name__)[:200]
                log.info("tunnel down: %s", self.state.last_error)
                if time.monotonic() - started > 2 * self.config.keepalive_s:
                    self._failures = 0  # it was up for a while: this is a fresh outage
                wait = self._backoff()
            finally:
                self.state.connected = False
                self._writer = None
            await asyncio.sleep(wait)

    def _backoff(self) -> float:
        delay = min(
            self.config.backoff_max_s, self.config.backoff_base_s * 2 ** min(self._failures, 16)
        )
        self._failures += 1
        return random.uniform(delay / 2, delay)

    # Connecting -------------------------------------------------------------------------

    async def _open(self, link: CentralLink) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            centre = PinnedCentre.parse(link.central_url, link.tls_pin)
        except ValueError as exc:
            raise TunnelRefused(str(exc)) from None
        host, port, prefix = centre.host, centre.port, centre.prefix
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self.context, server_hostname=host),
            self.config.connect_timeout_s,
        )
        ssl_object = writer.get_extra_info("ssl_object")
        try:
            centre.check(ssl_object.getpeercert(binary_form=True) if ssl_object else None)
        except PinMismatch as exc:
            writer.close()
            raise TunnelRefused(str(exc)) from None
        signed = sign_request(self.identity.sign, link.device_id, "GET", TUNNEL_PATH, b"")
        lines = [
            f"GET {prefix}{TUNNEL_PATH} HTTP/1.1",
            f"Host: {host}:{port}",
            f"Upgrade: {UPGRADE_TOKEN}",
            "Connection: Upgrade",
            *(f"{k}: {v}" for k, v in signed.items()),
            "",
            "",
        ]
        writer.write("\r\n".join(lines).encode())
        await writer.drain()
        try:
            head = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), self.config.connect_timeout_s
            )
        except asyncio.LimitOverrunError:
            raise TunnelBroken("the centre's answer head is too long") from None
        except asyncio.IncompleteReadError:
            raise TunnelBroken("the centre closed the connection") from None
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        words = status_line.split(" ", 2)
        status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        if status == 101:
            return reader, writer
        body = b""
        try:
            body = await asyncio.wait_for(reader.read(MAX_ANSWER_HEAD), 5.0)
        except (TimeoutError, OSError):
            pass
        writer.close()
        try:
            message = json.loads(body).get("error", "")
        except (ValueError, AttributeError):
            message = status_line
        if 400 <= status < 500:
            raise TunnelRefused(f"{status}: {message}")
        raise TunnelBroken(f"the centre answered {status_line!r}")

    async def _connect_and_serve(self, link: CentralLink) -> None:
        reader, writer = await self._open(link)
        frames = FrameReader()
        try:
            hello = await asyncio.wait_for(
                self._next_frame(reader, frames, []), self.config.connect_timeout_s
            )
            if hello.kind != FrameType.HELLO:
                raise TunnelBroken("the centre did not say hello")
            self._hello(hello.json(), link)
            self._writer = writer
            self.state.connected = True
            self.state.connects += 1
            self.state.since = time.time()
            self._failures = 0
            log.info("tunnel up: patients reach this box at %s", self.state.public_url)
            await self._serve(reader, frames)
        finally:
            writer.close()

    def _hello(self, hello: dict[str, Any], link: CentralLink) -> None:
        url = hello.get("public_url")
        if isinstance(url, str) and url.startswith("/"):
            # The centre has no public address configured: patients use the one boxes dial.
            parts = urlsplit(link.central_url)
            url = f"https://{parts.netloc}{url}"
        if isinstance(url, str) and url.startswith("https://") and url != self.state.public_url:
            self.state.public_url = url
            relay_state_file(self.data_dir).parent.mkdir(parents=True, exist_ok=True)
            write_private(
                relay_state_file(self.data_dir),
                json.dumps({"public_url": url, "slug": hello.get("slug")}).encode(),
            )

    # Serving ----------------------------------------------------------------------------

    async def _next_frame(
        self, reader: asyncio.StreamReader, frames: FrameReader, pending: list[Frame]
    ) -> Frame:
        while not pending:
            data = await reader.read(256 * 1024)
            if not data:
                raise TunnelBroken("the centre closed the tunnel")
            pending.extend(frames.feed(data))
        return pending.pop(0)

    async def _serve(self, reader: asyncio.StreamReader, frames: FrameReader) -> None:
        streams: dict[int, tuple[dict[str, Any], bytearray]] = {}
        pending: list[Frame] = []
        awaiting_pong = False
        while True:
            timeout = self.config.pong_timeout_s if awaiting_pong else self.config.keepalive_s
            try:
                frame = await asyncio.wait_for(self._next_frame(reader, frames, pending), timeout)
            except TimeoutError:
                if awaiting_pong:
                    raise TunnelBroken("no answer to the keep-alive") from None
                await self._send(encode(FrameType.PING))
                awaiting_pong = True
                continue
            awaiting_pong = False  # any frame shows the link is alive
            if frame.kind == FrameType.PING:
                await self._send(encode(FrameType.PONG))
            elif frame.kind == FrameType.REQUEST:
                streams[frame.stream] = (frame.json(), bytearray())
                self._cancelled.discard(frame.stream)
            elif frame.kind == FrameType.DATA and frame.stream in streams:
                body = streams[frame.stream][1]
                body += frame.payload
                if len(body) > MAX_BODY:
                    del streams[frame.stream]
                    await self._send(encode(FrameType.RESET, frame.stream))
            elif frame.kind == FrameType.END and frame.stream in streams:
                head, body = streams.pop(frame.stream)
                loop = asyncio.get_running_loop()
                loop.run_in_executor(self._pool, self._answer, frame.stream, head, bytes(body))
            elif frame.kind == FrameType.RESET:
                streams.pop(frame.stream, None)
                self._cancelled.add(frame.stream)

    async def _send(self, *frames: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise TunnelBroken("the tunnel is down")
        for frame in frames:
            writer.write(frame)
        await writer.drain()

    def _send_from_thread(self, *frames: bytes) -> None:
        future = asyncio.run_coroutine_threadsafe(self._send(*frames), self._loop)
        future.result(timeout=60)

    def _answer(self, stream: int, head: dict[str, Any], body: bytes) -> None:
        """Serve one relayed request on a pool thread and stream the answer back."""
        try:
            environ = relayed_environ(head, body)
        except BadRelayedRequest as exc:
            log.info("relayed request refused: %s", exc)
            self._try_send(encode(FrameType.RESET, stream))
            return
        try:
            answer = WsgiAnswer(self.app, environ)
        except Exception:  # noqa: BLE001 - the portal answers its own errors; this is a last net
            log.exception("relayed request failed")
            self._try_send(encode(FrameType.RESET, stream))
            return
        try:
            first = answer.first_chunk()
            code = int(answer.status.split(" ", 1)[0])
            self._send_from_thread(
                encode_json(
                    FrameType.RESPONSE,
                    stream,
                    {
                        "status": answer.status if code else "502 Bad Gateway",
                        "headers": [[k, v] for k, v in answer.headers],
                    },
                )
            )
            if first:
                self._send_from_thread(*encode_data(stream, first))
            for chunk in answer.rest():
                if stream in self._cancelled:
                    return
                self._send_from_thread(*encode_data(stream, chunk))
            self._send_from_thread(encode(FrameType.END, stream))
        except Exception as exc:  # noqa: BLE001 - a broken tunnel or portal ends this stream only
            log.info("relayed answer cut short: %s", exc.__class__.__name__)
            self._try_send(encode(FrameType.RESET, stream))
        finally:
            self._cancelled.discard(stream)
            answer.close()

    def _try_send(self, frame: bytes) -> None:
        try:
            self._send_from_thread(frame)
        except Exception:  # noqa: BLE001 - the tunnel is gone; the centre drops the stream
            pass
