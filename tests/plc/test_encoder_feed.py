"""EncoderFeed, against real Modbus peers: when it reads the encoder, and when a reading is kept
for the pulse instead of asking again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess, free_port, sim_args
from linegate.plc.encoder_feed import EncoderFeed
from tests.plc import recording_peer
from tests.plc.recording_peer import RecordingServer
from tests.plc.test_encoder_tracking import encoder_section
from tests.plc.test_worker import make_worker

pytestmark = pytest.mark.peer

CPS = 20_000


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recording")
    recording_peer.build(path)
    return path


def connected_feed(port: int, **tracking: float) -> EncoderFeed:
    cfg = encoder_section(port, timeout_ms=200)
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update=tracking)})
    worker, _log, _counters = make_worker(cfg)
    worker.keeper.ensure(time.monotonic_ns())
    assert worker.connected and worker.feed is not None
    return worker.feed


def encoder_reads(server: RecordingServer) -> int:
    return len([r for r in server.reads() if r.fc == 3])


def test_a_pulse_reuses_a_reading_just_answered_and_asks_again_after(build_dir: Path) -> None:
    """Replies held 20 ms (max_read_ms 50): right after a reading, refresh() asks nothing (a new read
    could only send the write 20 ms later); once the reply is half a round trip old, it reads."""
    with RecordingServer(build_dir, delay_ms=20, delay_fc=3) as server:
        feed = connected_feed(server.port, max_read_ms=50)
        feed.read(time.monotonic_ns(), force=True)
        before = encoder_reads(server)
        feed.refresh()
        assert encoder_reads(server) == before
        time.sleep(0.015)
        feed.refresh()
        assert encoder_reads(server) == before + 1


def test_a_pulse_never_reuses_a_slow_reading(build_dir: Path) -> None:
    """Replies held 20 ms against max_read_ms = 5: the reading is no point to fire on, so refresh()
    asks again however young it is."""
    with RecordingServer(build_dir, delay_ms=20, delay_fc=3) as server:
        feed = connected_feed(server.port, max_read_ms=5)
        feed.read(time.monotonic_ns(), force=True)
        before = encoder_reads(server)
        feed.refresh()
        assert encoder_reads(server) == before + 1


def test_the_encoder_is_read_when_the_next_reject_should_be_due_not_a_poll_later() -> None:
    """A belt at 20,000 counts/s, polled every 100 ms: for a reject 200 counts ahead (10 ms) the next
    read is due about when the belt gets there, well before the poll; for one 1 s ahead, or none, at
    the poll."""
    port = free_port()
    sim = PlcSimProcess(port, args=[*sim_args(encoder_section(port)), "--encoder-cps", str(CPS)])
    try:
        feed = connected_feed(port, poll_ms=100)
        for _ in range(4):  # the clock learns the belt's speed from readings a few ms apart
            feed.read(time.monotonic_ns(), force=True)
            time.sleep(0.005)
        newest = feed.tracker.clock.newest
        assert newest is not None
        t_read, position = newest
        assert feed.read_at_ns(None) == feed.next_read_ns
        assert feed.read_at_ns(position + CPS) == feed.next_read_ns  # 1 s away: the poll comes first
        soon = feed.read_at_ns(position + 200)
        assert soon < feed.next_read_ns
        assert abs(soon - (t_read + 10_000_000)) < 3_000_000, (soon - t_read) / 1e6  # the speed is exact
    finally:
        sim.stop()

