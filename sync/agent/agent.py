"""The sync agent: an asyncio task on the MediaLoop that drains the outbox to the centre.

Blocking work (SQLite outbox, HTTP) runs in one worker thread so the media loop never waits
on the link. Nothing is marked delivered without a receipt the centre signed for exactly the
batch sent (the receipt names the request's nonce).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from appliance.identity import DeviceIdentity
from appliance.store.outbox import Lane, Outbox, OutboxItem
from sync.agent.claim import (
    CentralLink,
    ClaimError,
    claim_with_voucher,
    load_link,
    pending_voucher,
    save_link,
)
from sync.agent.downsync import apply_change, verify_changes
from sync.agent.pipeline import PipelinedClient
from sync.agent.status import SyncStatus
from sync.agent.transport import (
    HANDSHAKE_BYTES,
    HEADER_BYTES,
    HttpClient,
    Rejected,
    Response,
    StaleConnection,
    TransportError,
)
from sync.agent.update_download import (
    UpdateDownloader,
    release_keys_from_env,
    release_root_from_env,
)
from sync.protocol import ProtocolError
from sync.protocol.messages import (
    COMPACT_RECEIPT,
    H_RECEIPT,
    encode_batch,
    seal_batch,
    verify_receipt,
)
from sync.protocol.signing import H_NONCE, sign_request

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    """Agent tuning; each field can be set with CLINICBOX_SYNC_<FIELD> (upper case)."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    min_batch: int = 1
    start_batch: int = 16
    max_batch: int = 512
    # A batch answered within this many seconds grows 4x, not 2x: on a long round trip the
    # doubling ramp from 16 leaves most of a short link window idle. One answered in over a
    # third of the read timeout does not grow, so a thin link never ramps into timeouts.
    quick_answer_s: float = 4.0
    max_batch_bytes: int = 2_000_000
    lease_s: float = 120.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    probe_interval_s: float = 5.0
    idle_s: float = 5.0
    pull_interval_s: float = 60.0
    daily_bytes: int = 200_000_000
    # While a live session has remote participants: 0 pauses, >0 holds to this many bytes/s.
    live_rate_bps: int = 0
    # Batches on their way at once, pipelined on one kept-alive connection: on a long round
    # trip one batch at a time leaves the link idle while each receipt comes back.
    in_flight: int = 3
    retention_s: float = 30 * 86400.0
    # Update bundles (sync.agent.update_download): how often to ask the centre (0: never),
    # the byte range fetched per request, and the share of the daily budget they may use
    # (the rest stays for records).
    update_check_interval_s: float = 3600.0
    update_chunk_bytes: int = 256 * 1024
    update_budget_share: float = 0.8

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AgentConfig:
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CLINICBOX_SYNC_{f.name.upper()}")
            if raw is not None:
                kind = int if f.type in ("int", int) else float
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"CLINICBOX_SYNC_{f.name.upper()} must be a number") from None
        return cls(**values)


@dataclass
class _Prepared:
    """One sealed, signed batch ready to send."""

    items: list[OutboxItem]
    body: bytes
    headers: dict[str, str]
    sent_at: float = field(default_factory=time.monotonic)


class SyncAgent:
    """Drains one store's outbox to the centre the box is claimed for."""

    def __init__(self, store: Any, data_dir: Path, identity: DeviceIdentity,
                 config: AgentConfig | None = None) -> None:
        self.store = store
        self.outbox = Outbox(store)
        self.data_dir = data_dir
        self.identity = identity
        self.config = config or AgentConfig.from_env()
        self.status = SyncStatus.load(data_dir)
        self.batch_size = self.config.start_batch
        self.failures = 0
        self._live_remote = threading.Event()
        self._link: CentralLink | None = None
        self._client: HttpClient | None = None
        self._last_pull = 0.0
        self._last_purge = 0.0
        self._last_update_check = 0.0
        self.updates = (
            UpdateDownloader(data_dir, release_root_from_env(), release_keys_from_env())
            if self.config.update_check_interval_s > 0 else None
        )
        self._update_client: HttpClient | None = None
        self._unsaved_update_bytes = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sync-agent")
        # Batches in flight: one waiting thread each; all share one pipelined connection.
        self._senders = ThreadPoolExecutor(max(1, self.config.in_flight),
                                           thread_name_prefix="sync-send")
        self._pipe: PipelinedClient | None = None
        self._pipe_lock = threading.Lock()
        self._flying: deque[tuple[_Prepared, Future[Response]]] = deque()
        self._stopping = threading.Event()
        self._task: asyncio.Task[None] | None = None

    # Hooks --------------------------------------------------------------------------------

    def set_live_session_remote(self, active: bool) -> None:
        """A live session has (True) or no longer has remote participants: the SFU's rooms
        announce it (`Rooms.on_remote_call`, wired by `start_sync_agent`)."""
        if active:
            self._live_remote.set()
        else:
            self._live_remote.clear()

    # Link ---------------------------------------------------------------------------------

    def link(self) -> CentralLink | None:
        """The centre link, presenting a stored voucher on first contact."""
        if self._link is None:
            self._link = load_link(self.data_dir)
            voucher = pending_voucher(self.data_dir) if self._link is None else None
            if voucher is not None:
                url, text = voucher
                try:
                    result = claim_with_voucher(url, text, self.identity)
                except ClaimError as exc:
                    self.status.failed(str(exc))
                    return None
                self._link = result.link(url)
                save_link(self.data_dir, self._link)
                log.info("voucher accepted; claimed as device %s", result.device_id)
        if self._link is not None and self._client is None:
            try:
                self._client = HttpClient(self._link.central_url, self.config.connect_timeout_s,
                                          self.config.read_timeout_s, self._link.tls_pin)
            except ValueError as exc:  # a plain-http URL from before pinning: never used
                self.status.failed(str(exc))
                self._link = None
        return self._link

    def _signed(self, method: str, path: str, body: bytes) -> dict[str, str]:
        assert self._link is not None
        return sign_request(self.identity.sign, self._link.device_id, method, path, body)

    def _push_headers(self, body: bytes) -> dict[str, str]:
        """A push's signed headers, asking for a compact receipt: when the centre holds the
        whole batch it answers with a count and a digest instead of echoing every record's
        id and hash (as many bytes as the batch, on the slower direction of a mobile link)."""
        return {**self._signed("POST", "/v1/records", body), H_RECEIPT: COMPACT_RECEIPT}

    def probe(self) -> bool:
        """Is the centre reachable right now? (cheap unauthenticated ping, short timeouts)"""
        link = self.link()
        if link is None or self._client is None:
            return False
        probe = HttpClient(link.central_url, 2.0, 3.0, link.tls_pin)
        try:
            probe.request("GET", "/v1/ping")
            return True
        except (TransportError, Rejected):
            return False

    # Up-sync ------------------------------------------------------------------------------

    def _prepare(self, items: list[OutboxItem]) -> _Prepared:
        """Seal and sign one batch of `items`."""
        link = self._link
        assert link is not None
        # The backlog the centre shows for this box: what stays queued once this batch lands.
        backlog = self.outbox.stats()
        for item in items:
            lane = Lane(item.lane).name.lower()
            backlog["lanes"][lane] = max(0, backlog["lanes"][lane] - 1)
        plaintext = encode_batch(link.device_id, items, backlog)
        body = seal_batch(link.sealing_key, link.device_id, plaintext)
        return _Prepared(items, body, self._push_headers(body))

    def _sender_client(self) -> PipelinedClient:
        """The connection every batch in flight is pipelined on."""
        link = self._link
        assert link is not None
        with self._pipe_lock:
            if self._pipe is None or self._pipe.base_url != link.central_url:
                if self._pipe is not None:
                    self._pipe.close()
                self._pipe = PipelinedClient(link.central_url, self.config.connect_timeout_s,
                                             self.config.read_timeout_s, link.tls_pin)
            return self._pipe

    def _send(self, prepared: _Prepared) -> Response:
        """Network part of a push (runs on a sender thread)."""
        client = self._sender_client()
        # A connection that closed before answering this batch (idle too long, or a proxy that
        # serves one request a connection and so drops the batches pipelined behind): again on
        # a new one, with a new nonce, since the centre may have seen it (a resent batch is
        # stored once; the receipt names the new nonce). Each batch ahead of it on the
        # pipeline can cost it one such retry.
        for _attempt in range(max(1, self.config.in_flight)):
            try:
                return client.request("POST", "/v1/records", prepared.body, prepared.headers)
            except StaleConnection:
                prepared.headers = self._push_headers(prepared.body)
        return client.request("POST", "/v1/records", prepared.body, prepared.headers)

    def _finish(self, prepared: _Prepared, answer: Response) -> int:
        """Acknowledge what the centre's signed receipt lists; the rest goes back to pending."""
        link = self._link
        assert link is not None
        items = prepared.items
        self.status.add_bytes(answer.wire_bytes)
        sent = {(i.record_id, i.version, i.content_hash) for i in items}
        stored = verify_receipt(link.signing_key, answer.json(), link.device_id,
                                prepared.headers[H_NONCE], list(sent))
        confirmed = [s for s in stored if s in sent]
        acked = self.outbox.acknowledge(confirmed)
        held = set(confirmed)
        missing = [i.entry_id for i in items
                   if (i.record_id, i.version, i.content_hash) not in held]
        if missing:
            self.outbox.release(missing, "not in the centre's receipt", 0.0)
        self.status.records_sent += acked
        self.status.last_success_at = time.time()
        return acked

    def push(self, items: list[OutboxItem]) -> int:
        """Send `items` in one signed, sealed request; acknowledge what the receipt lists."""
        prepared = self._prepare(items)
        return self._finish(prepared,
                            self._answer(prepared, self._senders.submit(self._send, prepared)))

    def _backoff(self) -> float:
        """Exponential backoff with full jitter in [delay/2, delay]."""
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** self.failures)
        return random.uniform(delay / 2, delay)

    def step(self) -> float:
        """One round: send one batch (or pull changes when idle); return seconds to wait."""
        cfg = self.config
        if self.link() is None:
            self.status.paused = "not claimed"
            return cfg.idle_s
        rate_hold = 0
        if self._live_remote.is_set():
            self._settle_flying()
            if cfg.live_rate_bps <= 0:
                self.status.paused = "live session with remote participants"
                return 1.0
            rate_hold = cfg.live_rate_bps
        remaining = cfg.daily_bytes - self.status.used_today()
        if remaining <= 0:
            self._settle_flying()
            self.status.paused = "daily byte budget used up"
            return 60.0
        self.status.paused = None
        if rate_hold:
            budget = min(cfg.max_batch_bytes, remaining, rate_hold)
            items = self.outbox.lease(budget, self.batch_size, cfg.lease_s)
            if not items:
                self._idle_work()  # no update bytes while remote patients are in a call
                return cfg.idle_s
            wait = self._push_one(items)
            return wait if wait else sum(len(i.payload) for i in items) / rate_hold
        return self._drain()

    def _push_one(self, items: list[OutboxItem]) -> float:
        sent_at = time.monotonic()
        try:
            self.push(items)
        except (TransportError, Rejected, ProtocolError) as exc:
            return self._failed(items, exc)
        self._succeeded(time.monotonic() - sent_at)
        return 0.0

    def _succeeded(self, answered_in_s: float) -> None:
        self.failures = 0
        cfg = self.config
        if answered_in_s > cfg.read_timeout_s / 3:
            return
        grow = 4 if answered_in_s <= cfg.quick_answer_s else 2
        self.batch_size = min(cfg.max_batch, self.batch_size * grow)

    def _failed(self, items: list[OutboxItem], exc: Exception) -> float:
        self.status.failed(str(exc))
        self.batch_size = max(self.config.min_batch, self.batch_size // 2)
        return self._retry_singly(items) if len(items) > 1 else self._give_back(items, exc)

    def _may_lease_more(self) -> bool:
        return (not self._live_remote.is_set() and not self._stopping.is_set()
                and self.status.used_today() < self.config.daily_bytes)

    def _drain(self) -> float:
        """Keep up to `in_flight` batches on their way and handle a receipt; return seconds
        to wait.

        Batches stay on their way across steps, so the link never idles while a receipt
        comes back. The first batch answered is handled first (not the oldest: a batch slowed
        by a lost segment must not hold the others' connections idle); its connection gets
        the next batch in the next step, at the batch size the receipt led to. After a failure
        the batches still on their way are settled first (what they delivered is kept), then
        the failed one is retried in halving chunks or given back, as for a single batch.
        """
        self._fill_flight()
        if not self._flying:
            # An update download goes on at once, a range a step, while nothing else waits.
            return 0.0 if self._idle_work() else self.config.idle_s
        prepared, future = self._first_answered()
        try:
            self._finish(prepared, self._answer(prepared, future))
        except (TransportError, Rejected, ProtocolError) as exc:
            self._settle_flying()
            return self._failed(prepared.items, exc)
        self._succeeded(time.monotonic() - prepared.sent_at)
        return 0.0

    def _fill_flight(self) -> None:
        """Lease, seal and send batches until `in_flight` are on their way (or none is due)."""
        cfg = self.config
        while len(self._flying) < max(1, cfg.in_flight) and self._may_lease_more():
            remaining = cfg.daily_bytes - self.status.used_today()
            items = self.outbox.lease(min(cfg.max_batch_bytes, remaining), self.batch_size,
                                      cfg.lease_s)
            if not items:
                break
            prepared = self._prepare(items)
            self._flying.append((prepared, self._senders.submit(self._send, prepared)))

    def _first_answered(self) -> tuple[_Prepared, Future[Response]]:
        """Wait for any batch on its way to be answered (or fail); take it off the list."""
        wait_for_futures([f for _p, f in self._flying], return_when=FIRST_COMPLETED)
        for entry in self._flying:
            if entry[1].done():
                self._flying.remove(entry)
                return entry
        raise AssertionError("wait() returned with no batch answered")

    def _answer(self, prepared: _Prepared, future: Future[Response]) -> Response:
        try:
            return future.result()
        except TransportError:
            self.status.add_bytes(len(prepared.body))  # the upload was (maybe partly) spent
            raise

    def _settle_flying(self) -> None:
        """Wait for every batch still on its way: keep what was delivered, release the rest."""
        while self._flying:
            prepared, future = self._flying.popleft()
            try:
                self._finish(prepared, self._answer(prepared, future))
            except (TransportError, Rejected, ProtocolError) as exc:
                self.outbox.release([i.entry_id for i in prepared.items], str(exc), 0.0)

    def _give_back(self, items: list[OutboxItem], exc: Exception) -> float:
        # The entries are due again at once: the agent itself waits, so that a successful
        # link probe can end the wait early.
        self.failures += 1
        self.outbox.release([i.entry_id for i in items], str(exc), 0.0)
        return self._backoff()

    def _retry_singly(self, items: list[OutboxItem]) -> float:
        """After a failed batch: resend its records in halving chunks down to one record,
        keeping every chunk that gets through (nothing restarts from zero).

        A transport failure ends the round (the link is down: back off and probe); a record
        the centre itself refuses is isolated by halving and held back for a backoff period,
        so one bad record cannot block its lane.
        """
        size, pending = max(1, len(items) // 2), list(items)
        while pending:
            chunk = pending[:size]
            try:
                self.push(chunk)
            except TransportError as exc:
                self.status.failed(str(exc))
                return self._give_back(pending, exc)
            except (Rejected, ProtocolError) as exc:
                self.status.failed(str(exc))
                if size > 1:
                    size //= 2
                    continue
                self.outbox.release([chunk[0].entry_id], str(exc), self._backoff())
            pending = pending[len(chunk):]
        self.failures = 0
        return 0.0

    def _idle_work(self) -> bool:
        """Down-sync, purging and update downloads once every record is sent; True when
        an update download moved bytes (call again soon)."""
        now = time.time()
        if now - self._last_pull >= self.config.pull_interval_s:
            self._last_pull = now
            try:
                self.pull_changes()
            except (TransportError, Rejected, ProtocolError) as exc:
                self.status.failed(f"down-sync: {exc}")
        if now - self._last_purge >= 3600:
            self._last_purge = now
            self.outbox.purge_delivered(self.config.retention_s)
        return self._update_work(now)

    # Updates ------------------------------------------------------------------------------

    def _update_allowance(self) -> int:
        """Bytes update downloads may still use today (their share of the daily budget)."""
        cap = int(self.config.daily_bytes * self.config.update_budget_share)
        return cap - self.status.used_today()

    def _update_may_go_on(self) -> bool:
        return (not self._live_remote.is_set() and not self._stopping.is_set()
                and self._update_allowance() > 0)

    def _spend_update_bytes(self, n: int) -> None:
        """Count download bytes, saved every 64 KiB: a range takes long on a weak link, and
        a killed agent must not forget what it already spent of the budget."""
        self.status.add_bytes(n)
        self._unsaved_update_bytes += n
        if self._unsaved_update_bytes >= 64 * 1024:
            self._unsaved_update_bytes = 0
            self.status.save(self.data_dir)

    def _update_work(self, now: float) -> bool:
        """Ask the centre for a newer release now and then (reporting this box's), and
        download the offered bundle one byte range a step, never during a call with remote
        patients and within the budget; True when bytes of a bundle arrived."""
        if self.updates is None or self._link is None or not self._update_may_go_on():
            return False
        if self._update_client is None or self._update_client.base_url != self._link.central_url:
            self._update_client = HttpClient(self._link.central_url,
                                             self.config.connect_timeout_s,
                                             self.config.read_timeout_s, self._link.tls_pin,
                                             keep_alive=True)
        try:
            if now - self._last_update_check >= self.config.update_check_interval_s:
                self._last_update_check = now
                self.status.add_bytes(self.updates.check(self._update_client, self._signed))
            if not self.updates.wants_bytes():
                return False
            # The range's own headers and a handshake fit in the allowance too.
            chunk = min(self.config.update_chunk_bytes,
                        self._update_allowance() - HEADER_BYTES - HANDSHAKE_BYTES)
            if chunk <= 0:
                return False
            got = self.updates.fetch_chunk(self._update_client, self._signed, chunk,
                                           self._update_may_go_on, self._spend_update_bytes)
        except (TransportError, Rejected) as exc:
            # The part file keeps what arrived; the next idle step asks for the rest.
            self.status.failed(f"update download: {exc}")
            return False
        return got > 0

    # Down-sync ----------------------------------------------------------------------------

    def pull_changes(self) -> int:
        """Fetch and apply the centre's changes after our cursor; return how many applied."""
        if self.link() is None or self._client is None:
            return 0
        applied = 0
        for _round in range(50):
            path = f"/v1/changes?after={self.status.changes_cursor}&limit=200"
            answer = self._client.request("GET", path, b"", self._signed("GET", path, b""))
            self.status.add_bytes(answer.wire_bytes)
            assert self._link is not None  # set by link() above; only link() changes it
            changes = verify_changes(self._link.signing_key, answer.json(),
                                     self._link.device_id)
            for change in changes:
                apply_change(self.data_dir, change)
                self.status.changes_cursor = max(self.status.changes_cursor, change["seq"])
                applied += 1
            self.status.save(self.data_dir)
            if not changes:
                break
        return applied

    # Running ------------------------------------------------------------------------------

    def _step_and_save(self) -> float:
        try:
            return self.step()
        finally:
            self.status.save(self.data_dir)

    async def run(self) -> None:
        """Sync until cancelled. While backing off, probe the link to resume soon after it
        returns."""
        loop = asyncio.get_running_loop()
        while True:
            wait = await loop.run_in_executor(self._executor, self._step_and_save)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                if self.failures and left > self.config.probe_interval_s:
                    await asyncio.sleep(self.config.probe_interval_s)
                    if await loop.run_in_executor(self._executor, self.probe):
                        self.failures = 0
                        break
                else:
                    await asyncio.sleep(left)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Schedule `run` as a task on `loop` (call from the loop's thread)."""
        self._task = loop.create_task(self.run(), name="sync-agent")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._pipe is not None:
            self._pipe.close()  # batches still waiting fail; their leases run out
        self._senders.shutdown(wait=False, cancel_futures=True)
