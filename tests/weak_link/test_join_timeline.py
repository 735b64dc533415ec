"""The lab's join timeline and arrival jitter, read from what a call page recorded (known
input: the steps `harness/call_probe.js` writes and Resource Timing entries)."""

from __future__ import annotations

from harness import browserstats
from harness.browsercall import BrowserSeat, Participant


def _patient() -> Participant:
    who = Participant(BrowserSeat("p1"))
    who.requests = [
        {"path": "/call", "start": 0, "request": 700, "response": 1400, "end": 1500},
        {"path": "/static/call.css", "start": 1600, "request": 1700, "response": 2300, "end": 2400},
        {"path": "/static/call.js", "start": 1600, "request": 1700, "response": 2400, "end": 3900},
        {"path": "/join/ping", "start": 4000, "request": 4000, "response": 5000, "end": 5000},
        {"path": "/join/ping", "start": 5000, "request": 5000, "response": 6100, "end": 6100},
        {"path": "/join/ping", "start": 6100, "request": 6100, "response": 7200, "end": 7200},
        {"path": "/join/ping", "start": 7200, "request": 7200, "response": 9900, "end": 9900},
        {"path": "/api/media/offer", "start": 7300, "request": 7300, "response": 9600, "end": 9700},
    ]
    who.steps = [
        [4200, "join pressed"],
        [7250, "pc1 created"],
        [9800, "pc1 iceConnectionState checking"],
        [10400, "pc1 iceConnectionState connected"],
        [11700, "pc1 connectionState connected"],
        [12300, "pc1 data channel open"],
        [12350, "pc1 first track audio"],
        [13000, "pc1 first data message"],
        [13100, "first audio played"],
    ]
    return who


def test_the_join_timeline_names_each_step_in_seconds_since_the_page_opened() -> None:
    timeline = _patient().join_timeline()
    assert timeline == {
        "page": 1.5,
        "scripts": 3.9,
        "pressed": 4.2,
        "checks": 3.0,  # the fourth answer came after the offer left
        "check_done": 7.2,
        "offer_sent": 7.3,
        "answer_first_byte": 9.6,
        "answered": 9.7,
        "ice_connected": 10.4,
        "connected": 11.7,
        "data_channel": 12.3,
        "first_message": 13.0,
        "first_track": 12.3,
        "first_audio": 13.1,
    }


def test_a_resent_offer_reads_the_last_connection() -> None:
    who = _patient()
    who.requests.append(
        {
            "path": "/api/media/offer",
            "start": 20000,
            "request": 20000,
            "response": 21000,
            "end": 21100,
        }
    )
    who.steps.append([22000, "pc2 connectionState connected"])
    timeline = who.join_timeline()
    assert timeline["offer_sent"] == 20.0 and timeline["connected"] == 22.0
    assert "ice_connected" not in timeline  # pc2 never said so


def test_arrival_jitter_is_the_highest_a_heard_slot_reported_in_the_window() -> None:
    def sample(t: float, received: int, jitter: float) -> dict:
        return {
            "t": t,
            "pc": 1,
            "rows": [
                {
                    "mid": "2",
                    "kind": "audio",
                    "who": "nurse",
                    "totalSamplesReceived": received,
                    "jitterBufferDelay": received / 48000 * 0.1,
                    "jitterBufferEmittedCount": received,
                    "jitter": jitter,
                },
                # A slot that shows nobody is not heard, whatever jitter it reports.
                {"mid": "3", "kind": "audio", "who": None, "jitter": 9.0},
            ],
        }

    samples = [sample(10.0 + i, 48000 * i, 0.01 * i) for i in range(6)]
    figures = browserstats.audio(samples, (11.5, 14.5))
    assert figures.arrival_jitter_ms == 40.0  # samples at 12, 13, 14 s: 20, 30, 40 ms
    assert figures.heard_s > 0
