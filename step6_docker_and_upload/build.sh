#!/usr/bin/env bash
# Build the grand-challenge image from this repository, with a trained model baked in or without one.
#   ./build.sh [--config CONFIG.py --weights CHECKPOINT.pth] [--tag NAME] [--base-image IMAGE]
# With a model, the config is staged self-contained (its _base_ files resolved) next to the weights, both are
# checked to load, and they enter the image through a named build context. Without one, the image runs the
# model tarball uploaded to the platform (Algorithm > Models; see README.md). Nothing is copied into the repo.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
TAG=cldetection-algorithm
CONFIG='' WEIGHTS='' BASE_IMAGE=''

die() { echo "error: $*" >&2; exit 2; }
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --config) CONFIG="${2:?--config needs a file}"; shift 2 ;;
        --weights) WEIGHTS="${2:?--weights needs a file}"; shift 2 ;;
        --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
        --base-image) BASE_IMAGE="${2:?--base-image needs an image}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ -n "$CONFIG" && -z "$WEIGHTS" || -z "$CONFIG" && -n "$WEIGHTS" ]] && die "--config and --weights go together"
if [[ -n "$CONFIG" ]]; then
    [[ -f "$CONFIG" ]] || die "$CONFIG: config file not found"
    [[ -f "$WEIGHTS" ]] || die "$WEIGHTS: weights file not found"
    [[ -x "$PYTHON" ]] || die "$PYTHON: no Python with cldetection installed (run 'make install', or set PYTHON=...)"
fi
command -v docker >/dev/null || die "docker: command not found"

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/cldetection-model.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
if [[ -n "$CONFIG" ]]; then
    "$PYTHON" -m cldetection.grand_challenge stage --config "$CONFIG" --weights "$WEIGHTS" --out "$STAGE"
else
    echo "no --config/--weights: building an image without a model (it runs the uploaded model tarball)"
fi
chmod -R a+rX "$STAGE"

build_args=()
[[ -n "$BASE_IMAGE" ]] && build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
DOCKER_BUILDKIT=1 docker build \
    --platform linux/amd64 \
    --file "$HERE/Dockerfile" \
    --build-context "model=$STAGE" \
    "${build_args[@]}" \
    --tag "$TAG" \
    "$REPO"
echo "built image $TAG"
