"""Export a torchvision ResNet-18 with seeded random weights to ONNX: a realistic-size test model.

Not a trained model: its verdicts mean nothing. It has the shape, operators and size (11.7 M
parameters, about 45 MB) of a common line-inspection backbone, so the toolchain (calibrate,
compare, build-engine) and timing are exercised on something real-sized. Needs torch and
torchvision (not linegate dependencies): run it from a separate virtual environment, see README.md.

    python engines/resnet18/export_resnet18.py                      # engines/resnet18/resnet18.onnx
    python engines/resnet18/export_resnet18.py --dynamic-batch --out /tmp/r18-dyn.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "resnet18.onnx", help="ONNX file (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random weights (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=2, help="output classes (default: %(default)s)")
    parser.add_argument("--height", type=int, default=224, help="input height (default: %(default)s)")
    parser.add_argument("--width", type=int, default=224, help="input width (default: %(default)s)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    parser.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (default: fixed 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import torchvision

    torch.manual_seed(args.seed)
    model = torchvision.models.resnet18(weights=None, num_classes=args.classes).eval()
    example = torch.zeros(1, 3, args.height, args.width)
    dynamic = {"image": {0: "batch"}, "logits": {0: "batch"}} if args.dynamic_batch else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        # The TorchScript exporter: one self-contained file at the requested opset, BatchNorm folded
        # into the convolutions (eval mode, constant folding).
        torch.onnx.export(
            model,
            (example,),
            str(args.out),
            input_names=["image"],
            output_names=["logits"],
            opset_version=args.opset,
            dynamic_axes=dynamic,
            do_constant_folding=True,
            dynamo=False,
        )
        probe = torch.linspace(0, 1, 3 * args.height * args.width).reshape(1, 3, args.height, args.width)
        expected = model(probe).numpy()
    check(args.out, probe.numpy(), expected)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    size_mb = args.out.stat().st_size / 1e6
    print(f"{args.out}: {size_mb:.1f} MB, sha256 {digest}, torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, seed {args.seed}, input image 1x3x{args.height}x{args.width}, output logits "
          f"1x{args.classes}, opset {args.opset}{', dynamic batch' if args.dynamic_batch else ''}")
    return 0


def check(path: Path, probe: object, expected: object) -> None:
    """The file passes the ONNX checker and, where onnxruntime is installed, matches PyTorch."""
    import numpy as np
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: ONNX output not compared with PyTorch", file=sys.stderr)
        return
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": probe})[0]
    worst = float(np.max(np.abs(got - expected)))
    print(f"onnxruntime {ort.__version__} vs PyTorch on a ramp input: max |diff| {worst:.2e}")
    if worst > 1e-3:
        raise SystemExit(f"{path}: onnxruntime and PyTorch differ by {worst:.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
