#!/usr/bin/env bash
# Installs Debian's chromium when it is missing and can be installed (root and apt-get), for the headless-browser
# test of step 5's report.html (tests/test_report.py). Where it cannot be installed that test skips, so this never
# fails: CI goes on. .ci/run calls it before the README's test command.
set -uo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
        || echo "chromium could not be installed: the browser test of the report will skip" >&2
else
    echo "chromium is not installed (needs root and apt-get): the browser test of the report will skip" >&2
fi
exit 0
