#!/usr/bin/env bash
# Run the built image on a test stack as grand-challenge does (/input read-only with inputs.json, no network,
# limited memory, a scratch /tmp, GPUs when present, an uploaded model tarball at /opt/ml/model) and compare its
# output with the expected output, landmark by landmark, within a tolerance.
#   ./test.sh [--tag NAME] [--stack test/stack.mha] [--expected test/expected_output.json]
#             [--model-tarball model.tar.gz] [--tolerance PIXELS (default 3)] [--memory 8g]
# Make the expected output outside Docker first (README.md in this folder shows how).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAG=cldetection-algorithm
STACK="$HERE/test/stack.mha"
EXPECTED="$HERE/test/expected_output.json"
TOLERANCE=''   # empty: the default of cldetection.grand_challenge compare
MEMORY=8g
MODEL_TARBALL=''

die() { echo "error: $*" >&2; exit 2; }
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
        --stack) STACK="${2:?--stack needs a file}"; shift 2 ;;
        --expected) EXPECTED="${2:?--expected needs a file}"; shift 2 ;;
        --tolerance) TOLERANCE="${2:?--tolerance needs a number}"; shift 2 ;;
        --memory) MEMORY="${2:?--memory needs a size}"; shift 2 ;;
        --model-tarball) MODEL_TARBALL="${2:?--model-tarball needs a file}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
command -v docker >/dev/null || die "docker: command not found"
docker image inspect "$TAG" >/dev/null 2>&1 || die "$TAG: no such image; run ./build.sh first"
[[ -f "$STACK" ]] || die "$STACK: test stack not found (make one with python -m cldetection.stack)"
[[ -f "$EXPECTED" ]] || die "$EXPECTED: expected output not found (make it with step5_predict_expected_output.py)"
[[ -z "$MODEL_TARBALL" || -f "$MODEL_TARBALL" ]] || die "$MODEL_TARBALL: model tarball not found"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cldetection-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/input/images/lateral-dental-x-rays" "$WORK/output" "$WORK/expected" "$WORK/tmp" "$WORK/model"
cp "$STACK" "$WORK/input/images/lateral-dental-x-rays/$(basename "$STACK")"
cp "$EXPECTED" "$WORK/expected/expected_output.json"
# The platform's list of the job's inputs (one socket value: the stack).
cat > "$WORK/input/inputs.json" <<JSON
[{"socket": {"slug": "lateral-dental-x-rays", "kind": "Image", "super_kind": "Image",
             "relative_path": "images/lateral-dental-x-rays"},
  "image": {"name": "$(basename "$STACK")"}, "file": null, "value": null}]
JSON
model_args=()
if [[ -n "$MODEL_TARBALL" ]]; then
    tar -xzf "$MODEL_TARBALL" -C "$WORK/model"
    model_args=(--volume "$WORK/model:/opt/ml/model:ro")
    echo "model: $MODEL_TARBALL at /opt/ml/model"
fi
# The container runs as its own user 'algorithm': it must read the inputs and model, write output and /tmp.
chmod -R a+rX "$WORK/input" "$WORK/expected" "$WORK/model"
chmod 777 "$WORK/output"
chmod 1777 "$WORK/tmp"

gpu_args=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    gpu_args=(--gpus all)
    echo "GPU found: running with --gpus all"
else
    echo "no GPU found: running on CPU"
fi

docker run --rm --platform linux/amd64 --network none --memory "$MEMORY" --memory-swap "$MEMORY" \
    --shm-size 128m "${gpu_args[@]}" "${model_args[@]}" \
    --volume "$WORK/input:/input:ro" --volume "$WORK/output:/output" --volume "$WORK/tmp:/tmp" \
    "$TAG"

# The comparison runs inside the image too, so the host needs nothing but docker.
docker run --rm --network none \
    --volume "$WORK/output:/output:ro" --volume "$WORK/expected:/expected:ro" \
    --entrypoint python "$TAG" -m cldetection.grand_challenge compare \
    /output/orthodontic-landmarks.json /expected/expected_output.json ${TOLERANCE:+--tolerance "$TOLERANCE"}
