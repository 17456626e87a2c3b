"""Train the demo model `ball_zone.onnx` on the CPU with PyTorch and check it on held-out real frames.

    python3.11 -m venv /tmp/venv-train
    /tmp/venv-train/bin/pip install torch==2.13.0 numpy onnx onnxruntime harvesters==1.4.3 genicam==1.6.0
    /tmp/venv-train/bin/python engines/demo/train_ball_zone.py [--out engines/demo/ball_zone.onnx]

1. Streams one whole trajectory period (frame ids 1..28520) of the simulated camera (genicam's
   `viky.cti`, device "0", 640x480 Mono8) through Harvesters, preprocessing each frame (`preprocess`).
2. Splits it by frame id: ids up to 20000 may train, later ids are held out. Ball positions that occur in
   the held-out range are removed from everything used in training, so held-out frames are new pictures.
3. Adds synthetic frames drawn exactly like Viky's (a black 20x20 square on white) at random positions,
   half of them within 8 px of a zone edge or corner, after checking that the renderer reproduces every
   preprocessed real frame exactly. Labels come from `linegate.demo.ground_truth`.
4. Trains, reports accuracy and confusion counts on the held-out real frames (PyTorch and ONNX Runtime)
   and on every possible ball position, exports ONNX (opset 17, IR 8) and times ONNX Runtime.

Exits non-zero when held-out accuracy is below 99.8%.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: linegate.demo.ground_truth is pure numpy

from linegate.demo.ground_truth import (  # noqa: E402
    BALL_SIZE,
    DEMO_ZONE,
    ball_center,
    expected_reject,
    viky_top_left,
)

W, H, FACTOR = 640, 480, 4
IN_W, IN_H = W // FACTOR, H // FACTOR
SPAN_X, SPAN_Y = W - BALL_SIZE, H - BALL_SIZE  # the top-left corner's range: 0..620, 0..460
PERIOD = math.lcm(2 * SPAN_X, 2 * SPAN_Y)  # 28520 frames, then the trajectory repeats
HALF = (BALL_SIZE - 1) / 2  # centre = top-left + 9.5
CLASSES = ("pass", "reject")


def preprocess(frame: np.ndarray) -> np.ndarray:
    """THE preprocessing contract (linegate reproduces it): 640x480 Mono8 -> mean of each 4x4 block ->
    120x160 -> float32 times 1/255 -> (1, 1, 120, 160) NCHW."""
    sums = frame.reshape(IN_H, FACTOR, W).sum(axis=1, dtype=np.uint16).reshape(IN_H, IN_W, FACTOR).sum(axis=2)
    means = sums.astype(np.float32) / np.float32(FACTOR * FACTOR)
    return (means * np.float32(1 / 255)).reshape(1, 1, IN_H, IN_W)


def render_full(x0: int, y0: int) -> np.ndarray:
    """A frame as Viky draws it: white Mono8 field, black 20x20 ball with top-left corner (x0, y0)."""
    frame = np.full((H, W), 255, dtype=np.uint8)
    frame[y0 : y0 + BALL_SIZE, x0 : x0 + BALL_SIZE] = 0
    return frame


def render(x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """`preprocess(render_full(x0, y0))` for many positions at once, (B, 1, 120, 160), computed directly
    from the ball's exact coverage of each 4x4 block (same float32 operations, so bit-identical)."""

    def coverage(start: np.ndarray, cells: int) -> np.ndarray:
        edges = np.arange(cells) * FACTOR
        lo = np.maximum(edges[None, :], start[:, None])
        hi = np.minimum(edges[None, :] + FACTOR, start[:, None] + BALL_SIZE)
        return np.clip(hi - lo, 0, FACTOR).astype(np.float32)

    dark = coverage(np.asarray(y0), IN_H)[:, :, None] * coverage(np.asarray(x0), IN_W)[:, None, :]
    sums = np.float32(255) * (np.float32(FACTOR * FACTOR) - dark)
    return ((sums / np.float32(FACTOR * FACTOR)) * np.float32(1 / 255))[:, None]


def zone_labels(x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Ground truth for a ball with top-left (x0, y0): reject (1) when its centre is in DEMO_ZONE."""
    cx, cy = np.asarray(x0) + HALF, np.asarray(y0) + HALF
    z = DEMO_ZONE
    return ((cx >= z.x0) & (cx < z.x1) & (cy >= z.y0) & (cy < z.y1)).astype(np.int64)


class BallZoneNet(nn.Module):
    """A fixed CoordConv layer and a trained MLP head.

    The fixed layer multiplies the frame's darkness (1 - image) by coordinate channels and sums over the
    image: mass and first moments of the dark pixels, the moments in full-frame pixels (centred, /64).
    The 4x4 area downsample keeps them exact (the ball's side is a multiple of 4), so the head sees the
    ball's centre to the pixel and can learn the zone's edges at half-pixel precision.
    """

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("xs", (torch.arange(IN_W, dtype=torch.float32) * FACTOR + 1.5 - W / 2) / 64)
        self.register_buffer("ys", (torch.arange(IN_H, dtype=torch.float32) * FACTOR + 1.5 - H / 2) / 64)
        self.ball_cells = float(BALL_SIZE * BALL_SIZE) / (FACTOR * FACTOR)
        self.head = nn.Sequential(
            nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )  # fmt: skip

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, 120, 160) preprocessed frames -> (B, 3): darkness mass, x and y moments (1 ball = mass 1)."""
        dark = 1.0 - image[:, 0]
        cols, rows = dark.sum(dim=1), dark.sum(dim=2)  # (B, 160), (B, 120)
        mass = cols.sum(dim=1, keepdim=True)
        mx = torch.matmul(cols, self.xs).unsqueeze(1)
        my = torch.matmul(rows, self.ys).unsqueeze(1)
        return torch.cat([mass, mx, my], dim=1) / self.ball_cells

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.features(image)), dim=1)


def capture_period(last_id: int, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stream Viky frames with ids 1..last_id; returns their ids, preprocessed inputs and ball corners."""
    import genicam
    from genicam.gentl import TimeoutException
    from harvesters.core import Harvester

    cti = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
    sigint = signal.getsignal(signal.SIGINT)
    harvester = Harvester()
    ia = None
    ids: list[int] = []
    inputs = np.empty((last_id, 1, IN_H, IN_W), dtype=np.float32)
    corners = np.empty((last_id, 2), dtype=np.int64)
    try:
        harvester.add_file(cti, check_existence=True, check_validity=True)
        harvester.update()
        ia = harvester.create({"serial_number": "0"})
        signal.signal(signal.SIGINT, sigint)  # Harvester.create() replaces the SIGINT handler
        nodes = ia.remote_device.node_map
        nodes.Width.value, nodes.Height.value, nodes.PixelFormat.value = W, H, "Mono8"
        nodes.AcquisitionFrameRate.value = fps
        ia.num_buffers = 16
        ia.start()
        t0, timeouts = time.monotonic(), 0
        while not ids or ids[-1] < last_id:
            try:
                with ia.fetch(timeout=1.0) as buffer:  # leaving the block re-queues the buffer
                    frame_id = int(buffer.frame_id)
                    component = buffer.payload.components[0]
                    frame = component.data.reshape(component.height, component.width)
                    if frame_id <= last_id:
                        n = len(ids)
                        inputs[n] = preprocess(frame)
                        center = ball_center(frame)
                        assert center is not None, f"frame {frame_id}: no ball"
                        corners[n] = (round(center[0] - HALF), round(center[1] - HALF))
                    ids.append(frame_id)
            except TimeoutException:
                timeouts += 1
                if timeouts > 10:
                    raise
            if ids and len(ids) % 5000 == 0:
                print(f"  frame {ids[-1]} ({time.monotonic() - t0:.0f} s)", flush=True)
        ia.stop()
    finally:
        if ia is not None:
            ia.destroy()
        harvester.reset()
        signal.signal(signal.SIGINT, sigint)
    got = np.array([i for i in ids if i <= last_id], dtype=np.int64)
    return got, inputs[: got.size], corners[: got.size]


def report(name: str, reject: np.ndarray, truth: np.ndarray) -> float:
    """Print accuracy and confusion counts; return the accuracy."""
    tp, tn = int(np.sum(reject & truth)), int(np.sum(~reject & ~truth))
    fp, fn = int(np.sum(reject & ~truth)), int(np.sum(~reject & truth))
    accuracy = (tp + tn) / truth.size
    print(
        f"{name}: accuracy {accuracy:.4%} on {truth.size} frames "
        f"(rejects: {tp} right, {fn} missed; passes: {tn} right, {fp} falsely rejected)",
        flush=True,
    )
    return accuracy


def sample_positions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ball corners: 50% uniform, 35% with the centre within 8 px of a zone edge, 15% of a zone corner."""
    z = DEMO_ZONE
    x0, y0 = rng.integers(0, SPAN_X + 1, n), rng.integers(0, SPAN_Y + 1, n)
    edge_x = rng.choice([z.x0, z.x1], n) + rng.integers(-8, 9, n) - HALF
    edge_y = rng.choice([z.y0, z.y1], n) + rng.integers(-8, 9, n) - HALF
    kind = rng.random(n)
    on_x = rng.random(n) < 0.5
    near_x = ((kind >= 0.5) & (kind < 0.85) & on_x) | (kind >= 0.85)
    near_y = ((kind >= 0.5) & (kind < 0.85) & ~on_x) | (kind >= 0.85)
    x0 = np.where(near_x, edge_x, x0).clip(0, SPAN_X).astype(np.int64)
    y0 = np.where(near_y, edge_y, y0).clip(0, SPAN_Y).astype(np.int64)
    return x0, y0


def features_of(net: BallZoneNet, images: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """The fixed layer's output for many images (it has no parameters, so it is computed once)."""
    with torch.no_grad():
        return torch.cat([net.features(torch.from_numpy(images[i : i + chunk])) for i in range(0, len(images), chunk)])


def features_of_positions(net: BallZoneNet, x0: np.ndarray, y0: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """The fixed layer's output for synthetic frames of balls at (x0, y0), rendered a chunk at a time."""
    return torch.cat([features_of(net, render(x0[i : i + chunk], y0[i : i + chunk])) for i in range(0, len(x0), chunk)])


def train_head(net: BallZoneNet, feats: torch.Tensor, labels: torch.Tensor, steps: int, seed: int) -> None:
    """Adam with a one-cycle schedule, batches of 256, cross-entropy."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.head.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    t0 = time.monotonic()
    for step in range(steps):
        idx = torch.randint(0, len(labels), (256,), generator=gen)
        loss = nn.functional.cross_entropy(net.head(feats[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 4000 == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {loss.item():.5f}  ({time.monotonic() - t0:.0f} s)", flush=True)


def predict(net: BallZoneNet, images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """P(reject) for many preprocessed images."""
    with torch.no_grad():
        return torch.cat(
            [net(torch.from_numpy(images[i : i + chunk]))[:, 1] for i in range(0, len(images), chunk)]
        ).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "ball_zone.onnx")
    ap.add_argument("--last-train-id", type=int, default=20000, help="real frames with larger ids are held out")
    ap.add_argument("--synthetic", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=200.0, help="capture rate (content depends on frame id only)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t_start = time.monotonic()

    print(f"capturing frame ids 1..{PERIOD} (one trajectory period) from Viky at {args.fps:g} fps ...", flush=True)
    ids, real, corners = capture_period(PERIOD, args.fps)
    formula = np.array([viky_top_left(int(i), W, H) for i in ids])
    print(
        f"captured {ids.size} frames ({PERIOD - ids.size} ids skipped by the producer); "
        f"ball corner = closed form of the frame id in {int(np.all(formula == corners, axis=1).sum())} of them"
    )
    # The labels below equal linegate's ground truth computed from full-resolution pixels.
    assert all(expected_reject(render_full(*viky_top_left(int(i)))) == bool(zone_labels(*viky_top_left(int(i))))
               for i in ids[:: max(1, ids.size // 500)])  # fmt: skip
    truth_all = zone_labels(corners[:, 0], corners[:, 1])
    diff = max(float(np.abs(render(corners[i : i + 2000, 0], corners[i : i + 2000, 1]) - real[i : i + 2000]).max())
               for i in range(0, ids.size, 2000))  # fmt: skip
    assert diff == 0.0, f"synthetic frames differ from preprocessed real frames by {diff}"
    assert np.array_equal(render(np.array([37]), np.array([211]))[0], preprocess(render_full(37, 211))[0])
    print("renderer reproduces every preprocessed real frame exactly")

    held = ids > args.last_train_id
    held_positions = {(int(x), int(y)) for x, y in corners[held]}
    train_real = ~held & np.array([(int(x), int(y)) not in held_positions for x, y in corners])
    print(
        f"real frames: {int(train_real.sum())} for training (ids <= {args.last_train_id}, "
        f"{int((~held).sum() - train_real.sum())} more dropped: their position recurs later), "
        f"{int(held.sum())} held out ({truth_all[held].mean():.1%} rejects)"
    )

    sx, sy = sample_positions(rng, args.synthetic)
    keep = np.array([(int(x), int(y)) not in held_positions for x, y in zip(sx, sy, strict=True)])
    sx, sy = sx[keep], sy[keep]
    print(f"synthetic frames: {sx.size} (held-out positions excluded), plus {args.synthetic // 100} empty frames")

    net = BallZoneNet()
    empty = np.ones((args.synthetic // 100, 1, IN_H, IN_W), dtype=np.float32)
    real_train_idx = np.flatnonzero(train_real)
    feats = torch.cat(
        [features_of(net, real[real_train_idx[i : i + 4096]]) for i in range(0, real_train_idx.size, 4096)]
        + [features_of_positions(net, sx, sy), features_of(net, empty)]
    )
    labels = torch.from_numpy(
        np.concatenate([truth_all[train_real], zone_labels(sx, sy), np.zeros(len(empty), dtype=np.int64)])
    )
    print(f"training on {len(labels)} frames, {args.steps} steps ...", flush=True)
    train_head(net, feats, labels, args.steps, args.seed)
    net.eval()

    truth = truth_all[held].astype(bool)
    p_held = predict(net, real[held])
    accuracy = report("held-out real frames (PyTorch)", p_held >= 0.5, truth)
    centers = corners[held] + HALF
    z = DEMO_ZONE
    edge_dist = np.minimum(
        np.minimum(np.abs(centers[:, 0] - z.x0), np.abs(centers[:, 0] - z.x1)),
        np.minimum(np.abs(centers[:, 1] - z.y0), np.abs(centers[:, 1] - z.y1)),
    )
    near = edge_dist <= 2.5
    report("  of which centre within 2.5 px of a zone edge", p_held[near] >= 0.5, truth[near])

    gx, gy = np.meshgrid(np.arange(SPAN_X + 1), np.arange(SPAN_Y + 1), indexing="xy")
    gx, gy = gx.ravel(), gy.ravel()
    p_all = np.concatenate([predict(net, render(gx[i : i + 4096], gy[i : i + 4096])) for i in range(0, gx.size, 4096)])
    report("every possible ball position (synthetic)", p_all >= 0.5, zone_labels(gx, gy).astype(bool))
    print(f"  smallest |P(reject) - 0.5| over all positions: {np.abs(p_all - 0.5).min():.3f}")
    p_empty = float(predict(net, empty[:1])[0])
    print(f"empty white frame: P(reject) = {p_empty:.4f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        net, (torch.from_numpy(real[:1]),), str(args.out), input_names=["image"], output_names=["scores"],
        opset_version=17, dynamo=False,
    )  # fmt: skip
    import onnx

    model = onnx.load(str(args.out))
    model.ir_version = 8  # onnxruntime 1.17 reads IR <= 9
    model.doc_string = f"linegate demo ball-zone classifier; classes {list(CLASSES)}; zone {DEMO_ZONE}"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB, opset 17, IR {model.ir_version})")

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(args.out), opts, providers=["CPUExecutionProvider"])
    held_inputs = real[held]
    ort_p = np.array(
        [session.run(["scores"], {"image": held_inputs[i : i + 1]})[0][0, 1] for i in range(len(held_inputs))]
    )
    print(f"onnxruntime {ort.__version__} vs PyTorch: max |P diff| {np.abs(ort_p - p_held).max():.2e}")
    ort_accuracy = report("held-out real frames (onnxruntime)", ort_p >= 0.5, truth)
    for i in range(50):
        session.run(["scores"], {"image": held_inputs[i : i + 1]})
    times = []
    for i in range(200):
        t = time.perf_counter_ns()
        session.run(["scores"], {"image": held_inputs[i : i + 1]})
        times.append(time.perf_counter_ns() - t)
    print(f"onnxruntime CPU, 1 intra-op thread: median {np.median(times) / 1e3:.0f} us over 200 runs")
    print(f"total {time.monotonic() - t_start:.0f} s")
    return 0 if min(accuracy, ort_accuracy) >= 0.998 else 1


if __name__ == "__main__":
    raise SystemExit(main())
