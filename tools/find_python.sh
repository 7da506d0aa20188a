#!/usr/bin/env bash
# Print the path of a supported Python interpreter for `make install` (the Makefile calls this).
#   tools/find_python.sh            the newest supported Python found (3.13, then 3.12, then 3.11)
#   tools/find_python.sh 3.12       that version
#   tools/find_python.sh CMD|PATH   that interpreter, checked to be a supported version
# A candidate counts only if it runs and has the venv module: a pyenv shim for a version that pyenv has not
# selected exists on PATH but fails to run, so pyenv's installed versions ($PYENV_ROOT/versions) are looked
# at too. Exit status 1 with a one-line message on stderr when nothing fits.
set -euo pipefail
SUPPORTED=(3.13 3.12 3.11)   # newest first; requirements.lock has wheels for each (its header says how)

die() { echo "error: $*" >&2; exit 1; }

# "X.Y PATH" of interpreter $1 (PATH: the real executable behind a shim or link), or nothing if it does not
# run or lacks venv.
describe() {
    "$1" -c 'import sys, venv; print("%d.%d" % sys.version_info[:2], sys.executable)' 2>/dev/null || true
}

is_supported() {
    local v
    for v in "${SUPPORTED[@]}"; do [[ "$v" == "$1" ]] && return 0; done
    return 1
}

# Every interpreter that claims to be version $1, most likely first.
candidates() {
    local root="${PYENV_ROOT:-$HOME/.pyenv}" found
    command -v "python$1" 2>/dev/null || true
    # pyenv's builds, newest patch release first
    for found in "$root"/versions/"$1".*/bin/"python$1"; do
        [[ -x "$found" ]] && echo "$found"
    done | sort -V -r
}

find_version() {
    local candidate found
    while read -r candidate; do
        [[ -n "$candidate" ]] || continue
        found="$(describe "$candidate")"
        [[ "${found%% *}" == "$1" ]] && { echo "${found#* }"; return 0; }
    done < <(candidates "$1")
    return 1
}

case "${1:-}" in
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    '')
        for v in "${SUPPORTED[@]}"; do find_version "$v" && exit 0; done
        die "no supported Python found (need one of ${SUPPORTED[*]}); install one, or pass PYTHON=/path/to/python" ;;
    [0-9].[0-9]*)
        is_supported "$1" || die "Python $1 is not supported (supported: ${SUPPORTED[*]})"
        find_version "$1" || die "Python $1 not found, or without its venv module (looked on PATH and in pyenv's versions; Debian/Ubuntu: apt-get install python$1-venv)" ;;
    *)
        found="$(describe "$1")"
        if [[ -z "$found" && "$1" =~ ^python([0-9]+\.[0-9]+)$ ]]; then  # e.g. an unselected pyenv shim
            is_supported "${BASH_REMATCH[1]}" || die "Python ${BASH_REMATCH[1]} is not supported (supported: ${SUPPORTED[*]})"
            find_version "${BASH_REMATCH[1]}" && exit 0
        fi
        [[ -n "$found" ]] || die "$1: not found, does not run, or has no venv module"
        is_supported "${found%% *}" || die "$1 is Python ${found%% *}, which is not supported (supported: ${SUPPORTED[*]})"
        echo "${found#* }" ;;
esac
