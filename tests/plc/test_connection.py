"""LinkKeeper against real peers: a link lost right after each connect is retried at the back-off
pace, not shown as up, and logged once a second."""

from __future__ import annotations

import pytest

from linegate.counters import Count
from linegate.demo.runner import PlcSimProcess, free_port, sim_args
from tests.plc.test_encoder_tracking import encoder_section
from tests.plc.test_worker import make_worker, step_for

pytestmark = pytest.mark.peer


def test_encoder_words_the_plc_refuses_back_off_stay_down_and_name_the_key() -> None:
    """Pulse mode with encoder tracking, the encoder words placed where the PLC has no registers: the
    connect works (the coil is there), the first encoder read is refused and loses the link. Each
    next connect waits the back-off, the link is not shown as up, the loss is logged once a second
    with the key to check. Before, every step reconnected (a CPU, and two log lines each)."""
    port = free_port()
    sim = PlcSimProcess(port, args=[*sim_args(encoder_section(port)), "--encoder-cps", "20000"])
    cfg = encoder_section(port)
    link = cfg.link
    assert link is not None
    wrong = link.model_copy(update={"register_base": 65000})
    worker, log, counters = make_worker(cfg.model_copy(update={"modbus": wrong}))
    def never_up_after_the_first_loss(steps: int) -> None:
        if steps > 2:
            assert counters.get(Count.PLC_CONNECTED) == 0

    try:
        steps = step_for(worker, 1.5, each=never_up_after_the_first_loss)
    finally:
        sim.stop()
    connects = counters.get(Count.PLC_RECONNECTS)
    lost = log.events("plc_link_lost")
    assert 3 <= connects <= 20, connects  # back-off 20, 40, 80, 160, then 200 ms
    assert lost and all("check plc.modbus.register_base" in r["error"] for r in lost)
    assert len(lost) <= 4 and len(log.events("plc_connected")) <= 4, (len(lost), connects)
    assert lost[-1].get("lost_soon_after_connecting", 1) >= 2
    assert steps < 300, steps
