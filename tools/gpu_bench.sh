#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, after tools/gpu_check.sh has built the package: the figures issue 19 asks for,
# each with a time limit, logged to $LOG_DIR (default gpu-check-logs/): MixNet-M training at batch 64 and inference
# at batch 1, yolov4 608 inference at batch 1 (darknet-py benchmark), MixNet-M's per-layer times, and MixNet-M
# against timm's mixnet_m in PyTorch (benchmarks/vs_pytorch.py). One summary line per figure.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-gpu-check-logs}
mkdir -p "$LOG_DIR"
SHARED=${SHARED:-../shared/darknet/cfg}

run() {   # run NAME SECONDS COMMAND...: the command's result lines (benchmark's first, vs_pytorch's summaries)
    local name=$1 limit=$2; shift 2
    if timeout "$limit" "$@" > "$LOG_DIR/$name.log" 2>&1; then
        echo "$name: $(grep -E ' on cuda|^MixNet-M' "$LOG_DIR/$name.log" | paste -sd '|')"
    else
        echo "$name: FAILED or over ${limit}s ($LOG_DIR/$name.log)"
    fi
}

run mixnet-train-b64 120 darknet-py benchmark cfg/mixnet_m.cfg --train --batch 64 --iterations 20 -gpus 0
run mixnet-infer-b1 60 darknet-py benchmark cfg/mixnet_m.cfg --batch 1 --iterations 100 -gpus 0
[ -f "$SHARED/yolov4.cfg" ] && run yolov4-608-b1 90 darknet-py benchmark "$SHARED/yolov4.cfg" --batch 1 --width 608 \
    --height 608 --iterations 50 -gpus 0
run mixnet-layers-b64 120 darknet-py benchmark cfg/mixnet_m.cfg --train --batch 64 --iterations 3 --layers -gpus 0
run vs-pytorch 180 python benchmarks/vs_pytorch.py --batch 64 --iterations 10 --rounds 3
