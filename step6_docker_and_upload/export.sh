#!/usr/bin/env bash
# Save the built image as a gzipped tar for upload to grand-challenge.
#   ./export.sh [--tag NAME] [--out FILE.tar.gz] [--overwrite]
set -euo pipefail
TAG=cldetection-algorithm
OUT=
OVERWRITE=0

die() { echo "error: $*" >&2; exit 2; }
usage() { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
        --out) OUT="${2:?--out needs a file}"; shift 2 ;;
        --overwrite) OVERWRITE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
OUT="${OUT:-${TAG//[:\/]/_}.tar.gz}"
command -v docker >/dev/null || die "docker: command not found"
docker image inspect "$TAG" >/dev/null 2>&1 || die "$TAG: no such image; run ./build.sh first"
[[ -e "$OUT" && "$OVERWRITE" -eq 0 ]] && die "$OUT: already exists; pass --overwrite to replace it"

# Write under a temporary name and rename: an interrupted export never looks complete.
TMP="$OUT.part"
trap 'rm -f "$TMP"' EXIT
docker save "$TAG" | gzip -c > "$TMP"
mv -f "$TMP" "$OUT"
echo "saved $TAG to $OUT ($(du -h "$OUT" | cut -f1))"
