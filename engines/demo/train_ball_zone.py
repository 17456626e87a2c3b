"""Train the demo model `ball_zone.onnx` on the CPU with PyTorch, and check it on held-out real frames.

    pip install -e .  &&  pip install torch==2.13.0 onnx
    python engines/demo/train_ball_zone.py [--steps 3000] [--out engines/demo/ball_zone.onnx]

Training data: the simulated camera draws a black 20x20 square on white; its frames after
linegate's demo preprocessing (640x480 -> 4x4 area mean -> 160x120, /255) are rendered here exactly
and directly at 160x120, for random ball positions (uniform, plus extra near the zone's edges, where
errors happen). Labels come from `linegate.demo.ground_truth` (reject when the ball's centre is in
DEMO_ZONE). Held-out data: real frames streamed from the simulator through linegate's own camera
and preprocessing code, never used for training. Prints accuracy, confusion counts and the ONNX
Runtime latency of the exported model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from linegate.camera.genicam import GenICamCamera
from linegate.config.schema import CameraSection, PreprocessSection
from linegate.demo.ground_truth import BALL_SIZE, DEMO_ZONE, ball_center, expected_reject
from linegate.vision.preprocess import build_preprocessor

HERE = Path(__file__).resolve().parent
W, H, FACTOR = 640, 480, 4
IN_W, IN_H = W // FACTOR, H // FACTOR
PREPROCESS = PreprocessSection(resize=(IN_W, IN_H), interpolation="area", scale=1 / 255)


class BallZoneNet(nn.Module):
    """Darkness -> its mass and first moments over the image (a fixed CoordConv-style layer) -> trained
    MLP -> softmax.

    Area downsampling keeps the ball's moments exact, so the MLP can place the zone's edges to a
    fraction of a full-resolution pixel. (A learned convolution in front of the moments trained
    50x slower on 2 CPU cores and added nothing on this picture.)
    """

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(0, 1, IN_H), torch.linspace(0, 1, IN_W), indexing="ij")
        self.register_buffer("coords", torch.stack([torch.ones_like(xs), xs, ys]).reshape(3, -1).T.contiguous())
        self.head = nn.Sequential(
            nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )
        self.ball_area = float(BALL_SIZE * BALL_SIZE) / (FACTOR * FACTOR)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        darkness = 1.0 - image  # the white field becomes exactly 0: only the ball counts
        moments = torch.matmul(darkness.flatten(2), self.coords) / self.ball_area  # B,1,3: mass, x and y moments
        return self.head(moments.flatten(1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(image), dim=1)


def render(x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Preprocessed frames (B,1,120,160) of a ball with top-left corner (x0, y0), exactly as the demo sees them."""

    def coverage(start: np.ndarray, cells: int) -> np.ndarray:
        edges = np.arange(cells) * FACTOR
        lo = np.maximum(edges[None, :], start[:, None])
        hi = np.minimum(edges[None, :] + FACTOR, start[:, None] + BALL_SIZE)
        return np.clip(hi - lo, 0, FACTOR).astype(np.float32)

    cover = coverage(y0, IN_H)[:, :, None] * coverage(x0, IN_W)[:, None, :]
    return (1.0 - cover / (FACTOR * FACTOR))[:, None].astype(np.float32)


def labels_for(x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    half = (BALL_SIZE - 1) / 2
    return np.array([DEMO_ZONE.contains(x + half, y + half) for x, y in zip(x0, y0, strict=True)], dtype=np.int64)


def sample_positions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Half uniform over the frame, half with the centre within 8 px of a zone edge."""
    x0 = rng.integers(0, W - BALL_SIZE + 1, n)
    y0 = rng.integers(0, H - BALL_SIZE + 1, n)
    near = rng.random(n) < 0.5
    half = (BALL_SIZE - 1) / 2
    edge_x = rng.choice([DEMO_ZONE.x0, DEMO_ZONE.x1], n) + rng.integers(-8, 9, n) - half
    edge_y = rng.choice([DEMO_ZONE.y0, DEMO_ZONE.y1], n) + rng.integers(-8, 9, n) - half
    on_x = rng.random(n) < 0.5
    x0 = np.where(near & on_x, edge_x, x0).clip(0, W - BALL_SIZE).astype(np.int64)
    y0 = np.where(near & ~on_x, edge_y, y0).clip(0, H - BALL_SIZE).astype(np.int64)
    return x0, y0


def capture_real_frames(count: int) -> list[np.ndarray]:
    """Stream *count* frames from the simulated camera through linegate's camera code."""
    cfg = CameraSection.model_validate(
        {"cti": "builtin:viky", "device": {"serial_number": "0"}, "width": W, "height": H,
         "pixel_format": "Mono8", "frame_rate_hz": 200.0, "buffers": 16}
    )  # fmt: skip
    frames: list[np.ndarray] = []
    with GenICamCamera(cfg) as cam:
        cam.open()
        cam.start()
        while len(frames) < count:
            cam.fetch(lambda data, *_: frames.append(data.reshape(H, W).copy()), timeout_s=2.0)
    return frames


def preprocess_real(frames: list[np.ndarray]) -> np.ndarray:
    pre = build_preprocessor(PREPROCESS, (H, W), "Mono8")
    out = np.empty((len(frames), 1, IN_H, IN_W), dtype=np.float32)
    for i, frame in enumerate(frames):
        pre(frame, out[i : i + 1])
    return out


def train(steps: int, seed: int) -> BallZoneNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = BallZoneNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.monotonic()
    for step in range(steps):
        x0, y0 = sample_positions(rng, 256)
        images, target = torch.from_numpy(render(x0, y0)), torch.from_numpy(labels_for(x0, y0))
        loss = loss_fn(net.logits(images), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 1000 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.5f}  ({time.monotonic() - t0:.0f} s)", flush=True)
    return net


def report(name: str, predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int(np.sum(predicted & truth))
    tn = int(np.sum(~predicted & ~truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    accuracy = (tp + tn) / truth.size
    print(f"{name}: accuracy {accuracy:.4%} on {truth.size} frames (rejects: {tp} right, {fn} missed; "
          f"passes: {tn} right, {fp} falsely rejected)")  # fmt: skip
    return accuracy


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--held-out", type=int, default=3000, help="real frames streamed for evaluation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "ball_zone.onnx")
    args = ap.parse_args()
    torch.set_num_threads(2)

    print(f"capturing {args.held_out} held-out frames from the simulated camera ...", flush=True)
    real = capture_real_frames(args.held_out)
    real_input = preprocess_real(real)
    truth = np.array([expected_reject(f) for f in real])
    # The renderer must reproduce the real pipeline's input exactly, or training data would lie.
    centers = [ball_center(f) for f in real[:200]]
    corners = np.array([(x - (BALL_SIZE - 1) / 2, y - (BALL_SIZE - 1) / 2) for x, y in centers]).astype(np.int64)  # type: ignore[misc]
    rendered = render(corners[:, 0], corners[:, 1])
    assert np.abs(rendered - real_input[:200]).max() < 1e-6, "renderer and preprocessing disagree"
    print(f"held-out frames: {truth.mean():.1%} rejects; renderer matches real preprocessing exactly")

    net = train(args.steps, args.seed).eval()
    with torch.no_grad():
        probs = net(torch.from_numpy(real_input)).numpy()
    accuracy = report("held-out real frames (torch)", probs[:, 1] >= 0.5, truth)

    rng = np.random.default_rng(args.seed + 1)
    x0, y0 = sample_positions(rng, 20_000)
    with torch.no_grad():
        synth = net(torch.from_numpy(render(x0, y0))).numpy()[:, 1] >= 0.5
    report("fresh synthetic positions, half near edges", synth, labels_for(x0, y0).astype(bool))

    torch.onnx.export(
        net, (torch.from_numpy(real_input[:1]),), str(args.out), input_names=["image"], output_names=["scores"],
        opset_version=17, dynamo=False,
    )  # fmt: skip
    import onnx

    model = onnx.load(str(args.out))
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    onnx.save(model, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB, opset 17, IR {model.ir_version})")

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(args.out), opts, providers=["CPUExecutionProvider"])
    ort_probs = np.concatenate([session.run(None, {"image": real_input[i : i + 1]})[0] for i in range(len(real))])
    print(f"onnxruntime vs torch: max |diff| {np.abs(ort_probs - probs).max():.2e}")
    report("held-out real frames (onnxruntime)", ort_probs[:, 1] >= 0.5, truth)
    times = []
    for i in range(300):
        t = time.perf_counter_ns()
        session.run(None, {"image": real_input[i : i + 1]})
        times.append(time.perf_counter_ns() - t)
    print(f"onnxruntime CPU, 1 thread: median {np.median(times[100:]) / 1e3:.0f} us per frame")
    return 0 if accuracy >= 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
