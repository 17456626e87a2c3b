"""GenICam acquisition through Harvesters against the real simulated GenTL producer (Viky)."""

from __future__ import annotations

import resource
import signal

import pytest

from linegate.camera.frame_ids import CameraClockMapper, FrameIdTracker
from linegate.camera.genicam import CameraFrame, GenICamCamera
from linegate.config.schema import CameraSection
from linegate.errors import CameraError

BASE = {"cti": "builtin:viky", "device": {"serial_number": "0"}, "width": 320, "height": 240, "pixel_format": "Mono8"}


def camera(**override: object) -> GenICamCamera:
    return GenICamCamera(CameraSection.model_validate({**BASE, **override}))


def test_opens_by_serial_applies_settings_and_streams() -> None:
    """The device is found by serial number, configured, and delivers frames of that geometry with ids."""
    frames: list[tuple[tuple[int, ...], int, int, int]] = []

    def keep(f: CameraFrame) -> None:
        assert f.defect is None and f.pixels is not None and f.frame_id is not None
        frames.append((f.pixels.shape, f.frame_id, f.t_receipt_ns, int(f.pixels.min())))

    with camera(frame_rate_hz=200.0) as cam:
        info = cam.open()
        assert info.serial_number == "0" and info.model == "Viky"
        assert info.applied == {"PixelFormat": "Mono8", "Width": 320, "Height": 240, "AcquisitionFrameRate": 200.0}
        cam.start()
        while len(frames) < 20:
            assert cam.fetch(keep)
        assert cam.defective == 0
    assert all(shape == (240, 320) for shape, _, _, _ in frames)
    ids = [fid for _, fid, _, _ in frames]
    assert ids == list(range(ids[0], ids[0] + 20))  # consecutive: no gaps from the simulator
    times = [t for _, _, t, _ in frames]
    assert times == sorted(times)
    assert min(m for *_, m in frames) < 128  # the dark ball is in the picture


def test_open_by_index_and_user_id_selector() -> None:
    """Index selects by enumeration order; an unknown user id is an error naming the key."""
    with camera(device={"index": 2}) as cam:
        assert cam.open().serial_number == "2"
    with camera(device={"user_id": "no-such-camera"}) as cam, pytest.raises(CameraError, match="camera.device.user_id"):
        cam.open()


def test_unknown_serial_lists_the_serials_found() -> None:
    """A serial number that matches no device names the key and lists what was found."""
    with camera(device={"serial_number": "99"}) as cam, pytest.raises(CameraError) as info:
        cam.open()
    assert "camera.device.serial_number='99'" in str(info.value) and "'0', '1', '2'" in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"width": 5000}, "camera.width: camera refused Width=5000 (allowed 100..800)"),
        (
            {"pixel_format": "RGB8"},
            "camera.pixel_format: camera refused PixelFormat='RGB8' (allowed ['RGBa8', 'Mono8'])",
        ),
        (
            {"frame_rate_hz": 500.0},
            "camera.frame_rate_hz: camera refused AcquisitionFrameRate=500.0 (allowed 1.0..200.0)",
        ),
        ({"nodes": {"NoSuchNode": 1}}, "camera.nodes.NoSuchNode: the camera has no such node"),
        ({"nodes": {"Width": "wide"}}, "camera.nodes.Width: camera refused Width='wide'"),
    ],
)
def test_refused_settings_name_the_key_and_the_limits(override: dict, expected: str) -> None:  # type: ignore[type-arg]
    """A value the camera refuses is an error naming the config key, the node and what it allows."""
    with camera(**override) as cam, pytest.raises(CameraError) as info:
        cam.open()
    assert expected in str(info.value)


def test_absent_optional_nodes_are_skipped_not_fatal() -> None:
    """Exposure, gain and trigger are applied only where the camera has the node (Viky has none)."""
    with camera(exposure_us=500.0, gain_db=1.0, trigger_mode="Off") as cam:
        info = cam.open()
    assert info.skipped == ["trigger_mode", "exposure_us", "gain_db"]
    assert "ExposureTime" not in info.applied


def test_missing_producer_file_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A .cti path that is not a GenTL producer fails with the path in the message."""
    fake = tmp_path / "fake.cti"
    fake.write_bytes(b"\x7fELF not really")
    with camera(cti=str(fake)) as cam, pytest.raises(CameraError, match="fake.cti"):
        cam.open()


def test_timeout_is_counted_and_returns_false() -> None:
    """With no frame in time, fetch returns False and counts a timeout instead of raising."""
    with camera(frame_rate_hz=1.0) as cam:
        cam.open()
        cam.start()
        assert cam.fetch(lambda *a: None, timeout_s=3.0)  # the first frame
        assert cam.fetch(lambda *a: None, timeout_s=0.05) is False
        assert cam.timeouts == 1


def test_fetch_waits_in_slices_of_half_its_timeout_not_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """Harvesters' fetch wakes once per GenTL event wait (1 ms by default: 40 wake-ups a frame at
    25 fps); linegate sets the wait to half the fetch timeout, so a stream costs about one wake-up
    of the fetching thread per frame, and a shorter timeout shortens the wait with it, without
    Harvesters' "may cause timeout" warning (its logger drops warnings: the call is recorded)."""
    import harvesters.core

    warned: list[object] = []
    monkeypatch.setattr(harvesters.core._logger, "warning", lambda *a, **k: warned.append(a))
    with camera(frame_rate_hz=25.0, fetch_timeout_ms=200) as cam:
        cam.open()
        cam.start()
        assert cam.fetch(lambda *a: None, timeout_s=3.0)  # the first frame
        assert cam.fetch(lambda *a: None)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
        for _ in range(10):
            assert cam.fetch(lambda *a: None)
        wakes = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
        assert wakes <= 30, f"{wakes} wake-ups of the fetching thread for 10 frames at 25 fps"
        assert cam._acquirer is not None and cam._acquirer.timeout_period_on_update_event_data_call == 100
        assert cam.fetch(lambda *a: None, timeout_s=0.021) in (True, False)
        assert cam._acquirer.timeout_period_on_update_event_data_call == 11
    assert warned == []


def test_sigint_handler_is_restored_after_open() -> None:
    """Harvesters replaces SIGINT's handler in create(); linegate puts the previous one back."""
    sentinel = lambda *a: None  # noqa: E731
    previous = signal.signal(signal.SIGINT, sentinel)
    try:
        with camera() as cam:
            cam.open()
            assert signal.getsignal(signal.SIGINT) is sentinel
    finally:
        signal.signal(signal.SIGINT, previous)


def test_stop_start_keeps_one_acquirer_and_frames_flow_again() -> None:
    """A stop/start cycle on the same acquirer streams again (ids restart on Viky)."""
    with camera(frame_rate_hz=200.0) as cam:
        cam.open()
        for _ in range(3):
            cam.start()
            assert cam.fetch(lambda *a: None, timeout_s=2.0)
            cam.stop()


def test_frame_id_tracker_counts_gaps_and_restarts() -> None:
    """Gaps in camera frame ids are lost frames; a step back is a restart, not a loss."""
    tracker = FrameIdTracker()
    assert [tracker.observe(i) for i in (1, 2, 3, 6, 7, 1, 2)] == [0, 0, 0, 2, 0, 0, 0]
    assert tracker.lost == 2 and tracker.restarts == 1


def test_camera_clock_mapper_uses_the_fastest_arrival() -> None:
    """Camera timestamps map to host time with the smallest observed offset (least delayed frame)."""
    mapper = CameraClockMapper(window=3)
    assert mapper.to_host(1_000, 5_500) == 5_500  # offset 4500
    assert mapper.to_host(2_000, 6_100) == 6_100  # offset 4100: better
    assert mapper.to_host(3_000, 7_900) == 7_100  # slow arrival: mapped with offset 4100
    mapper.to_host(4_000, 8_600)  # offset 4600; the window forgets 4500, best stays 4100
    assert mapper.to_host(5_000, 9_600) == 9_600  # the window forgets 4100: best is now 4600 (follows drift)
    assert mapper.to_host(6_000, 10_700) == 10_600


def test_rgba_frames_come_shaped_with_their_channels() -> None:
    """An RGBa8 stream hands over whole frames shaped (height, width, 4)."""
    shapes: list[tuple[int, ...]] = []
    with camera(pixel_format="RGBa8") as cam:
        cam.open()
        cam.start()
        assert cam.fetch(lambda f: shapes.append(f.pixels.shape if f.pixels is not None else ()), timeout_s=3.0)
    assert shapes == [(240, 320, 4)]


def test_buffer_flagged_incomplete_is_handed_over_as_a_defective_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """A buffer flagged incomplete comes out of fetch at once as a frame with defect "incomplete" and no pixels."""
    # Viky never loses data: the GenTL flag is forced for every 5th frame id of its real buffers. Harvesters
    # alone would re-queue such a buffer and wait on; the whole frames around it must flow on.
    from genicam import gentl

    real = gentl.Buffer.is_complete
    monkeypatch.setattr(gentl.Buffer, "is_complete", lambda self: real(self) and int(self.frame_id) % 5 != 0)
    got: list[CameraFrame] = []
    with camera(frame_rate_hz=200.0) as cam:
        cam.open()
        cam.start()
        while len(got) < 12:
            assert cam.fetch(lambda f: got.append(CameraFrame(None, f.frame_id, f.t_receipt_ns, None, f.defect)))
        assert cam.defective == sum(f.defect is not None for f in got) >= 2
    ids = [f.frame_id for f in got]
    first = ids[0]
    assert first is not None
    expected = [None if i % 5 == 0 else i for i in range(first, first + 12)]
    assert ids == expected
    assert [str(f.defect) for f in got if f.frame_id is None] == ["incomplete"] * expected.count(None)
    assert all(f.defect is None for f in got if f.frame_id is not None)
    times = [f.t_receipt_ns for f in got]
    assert times == sorted(times)
