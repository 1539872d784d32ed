#!/usr/bin/env bash
# OpenCV 5 runs our ONNX exports: export yolov4-tiny and efficientnet_b0 (well-scaled random weights written by
# our writer, tests/reference_nets.py) with this environment's darknet_py, save our CPU engine's outputs on
# dog.jpg as .npy, then load each .onnx with cv2.dnn.readNetFromONNX in a separate virtual environment holding
# only opencv-python-headless>=5 and numpy, and print the largest error relative to the output's max |value|.
# Usage: tools/check_opencv5.sh [VENV (default /tmp/venv-cv5)] [WORKDIR (default /tmp/onnx-cv5)]
# Exit status 1 if an output differs by more than 1e-4 of its max |value|.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-/tmp/venv-cv5}"
WORK="${2:-/tmp/onnx-cv5}"
SHARED="${SHARED:-$REPO/../shared/darknet}"
PYTHON="${PYTHON:-python}"
mkdir -p "$WORK"

echo "== exporting with darknet_py ($("$PYTHON" -c 'import onnx; print("onnx", onnx.__version__)'))"
PYTHONPATH="$REPO/tests${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$SHARED" "$WORK" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from reference_nets import image_blob, reference_net

shared, work = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("yolov4-tiny", "efficientnet_b0"):
    net = reference_net(shared / "cfg" / f"{name}.cfg", work / f"{name}.weights")
    x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
    net.forward(x)
    model = net.export_onnx(work / f"{name}.onnx")
    np.save(work / f"{name}.input.npy", x)
    for output in model.graph.output:
        layer = net.layers[-1] if output.name == "output" else net.layers[int(output.name.rsplit("_", 1)[1])]
        np.save(work / f"{name}.{output.name}.npy", np.asarray(layer.output))
    print(f"{name}: {work / (name + '.onnx')}, outputs {[o.name for o in model.graph.output]}")
EOF

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade "opencv-python-headless>=5" numpy

echo "== running with OpenCV 5 (cv2.dnn.readNetFromONNX)"
"$VENV/bin/python" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import cv2
import numpy as np

work = Path(sys.argv[1])
print(f"opencv {cv2.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
worst = 0.0
for name in ("yolov4-tiny", "efficientnet_b0"):
    net = cv2.dnn.readNetFromONNX(str(work / f"{name}.onnx"))
    net.setInput(np.load(work / f"{name}.input.npy"))
    expected = {p.name.split(".")[1]: np.load(p) for p in sorted(work.glob(f"{name}.*.npy")) if ".input." not in p.name}
    names = list(expected)
    outputs = net.forward(names)
    for out_name, theirs in zip(names, outputs):
        ours = expected[out_name]
        error = float(np.max(np.abs(theirs.reshape(ours.shape) - ours)) / np.max(np.abs(ours)))
        worst = max(worst, error)
        print(f"{name} {out_name} {tuple(ours.shape)}: max relative error {error:.2e}")
print(f"worst relative error {worst:.2e} ({'ok' if worst <= 1e-4 else 'FAILED'}: tolerance 1e-4)")
sys.exit(0 if worst <= 1e-4 else 1)
EOF
