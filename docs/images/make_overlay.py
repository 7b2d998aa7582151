"""Make docs/images/overlay.jpg: the node's debug overlay on a real clip, DAVIS 2016 `blackswan`.

No model checkpoint can be downloaded where this is made, so `videomolmo_demo` runs the node with
the ground-truth doubles of test/support as its backends, loaded as a user's own classes are
(`pointer_backend: truth_doubles:TruthPointerDouble`, on the PYTHONPATH): the pointer points at the
annotated swan, the propagator returns its annotated mask. The rest is the node's own: the command,
tracking, the messages, and the overlay the demo draws from them. The footage is read from the
shared data folder and never committed.

    . scripts/env.sh && python docs/images/make_overlay.py [--data ../shared/data] [--frame 30]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
SEQUENCE, QUERY, FPS = "blackswan", "the swan", 24
WIDTH = 640  # px: small enough for the README, large enough to read the label


def truth_parameters(davis_root: Path) -> dict[str, object]:
    """The node's parameters: the ground-truth doubles as pointer and propagator, on the CPU."""
    options = {"davis_root": str(davis_root), "sequences": SEQUENCE}
    params: dict[str, object] = {
        "device": "cpu",
        "pointer_backend": "truth_doubles:TruthPointerDouble",
        "propagator_backend": "truth_doubles:TruthPropagatorDouble",
    }
    for double in ("TruthPointerDouble", "TruthPropagatorDouble"):
        params |= {f"{double}.{name}": value for name, value in options.items()}
    return {"perception_node": {"ros__parameters": params}}


def run_demo(davis_root: Path, out: Path) -> Path:
    """videomolmo_demo on the sequence's frames; the overlay video it wrote."""
    params = out / "truth.yaml"
    params.write_text(yaml.safe_dump(truth_parameters(davis_root)))
    frames = davis_root / "JPEGImages" / "480p" / SEQUENCE
    support = str(ROOT / "test" / "support")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [support, os.environ.get("PYTHONPATH")]))}
    command = ["videomolmo_demo", str(frames), "--fps", str(FPS), "--query", QUERY]
    subprocess.run([*command, "--params-file", str(params), "-o", str(out / "demo_out")], env=env, check=True)
    return out / "demo_out" / "overlay.mp4"


def still(video: Path, index: int) -> np.ndarray:
    """Frame `index` of `video`, scaled to WIDTH."""
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    if not ok:
        sys.exit(f"{video} has no frame {index}")
    height = round(frame.shape[0] * WIDTH / frame.shape[1])
    return cv2.resize(frame, (WIDTH, height), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--frame", type=int, default=30, help="which frame of the clip to show")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "images" / "overlay.jpg")
    args = parser.parse_args()
    davis_root = args.data / "davis2016"
    if not (davis_root / "JPEGImages" / "480p" / SEQUENCE).is_dir():
        sys.exit(f"DAVIS 2016 {SEQUENCE} is not under {davis_root}")
    with tempfile.TemporaryDirectory() as folder:
        image = still(run_demo(davis_root, Path(folder)), args.frame)
    cv2.imwrite(str(args.output), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"{args.output}: frame {args.frame} of {SEQUENCE}, {image.shape[1]}x{image.shape[0]}")


if __name__ == "__main__":
    main()
