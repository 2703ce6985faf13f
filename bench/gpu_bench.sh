#!/usr/bin/env bash
# The GPU measurements in one command, run from the repository root on a machine with a CUDA GPU:
#
#     bash bench/gpu_bench.sh [OUT_DIR]        (default: bench-gpu/)
#
# 1. bench/encode_throughput.py --device cuda: windows per pass 16-512, float32 and bfloat16,
#    ms per window, audio-hours per GPU-hour, peak memory, bf16/fp32 token agreement.
# 2. bench/decode_resample.py --device cuda: decode-task x real time per core with the resampling
#    in the decode task or on the GPU (`--resample-on encoder`), the GPU resampler's speed, and the
#    token agreement of the two paths.
#
# Needs torch/torchaudio 2.11 with CUDA, numpy, tqdm and soundfile, and the golden manifests the
# synthetic full-size checkpoint is rebuilt from ($SEMANTICODEC_GOLDEN_DIR, else .golden/ when present,
# else ../shared/golden/semanticodec). On an image without soundfile, put its wheels (soundfile, cffi,
# pycparser; Python 3.12 manylinux x86_64) in .whl/ and they are installed into /tmp/site first.
# With this workplace's device tool: ignore /.whl/ and /.golden/ in .git/info/exclude, fill them
# (pip download ... -d .whl soundfile cffi pycparser; cp ../shared/golden/semanticodec/* .golden/),
# then run `bash bench/gpu_bench.sh $OUT` carrying [".whl", ".golden"].
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SEMANTICODEC_GOLDEN_DIR:-}" ] && [ -d .golden ]; then
    export SEMANTICODEC_GOLDEN_DIR="$PWD/.golden"
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
out="${1:-bench-gpu}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 bench/encode_throughput.py --device cuda --sweep-clips 1024 2>&1 | tee "$out/encode_throughput.txt"
python3 bench/decode_resample.py --device cuda --clips 200 --agreement-clips 64 2>&1 | tee "$out/decode_resample.txt"
