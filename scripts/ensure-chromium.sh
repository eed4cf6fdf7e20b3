#!/usr/bin/env bash
# Install Debian's Chromium when it is missing, for the HTML report's headless-browser test
# (tests/test_analysis.py::test_report_renders_in_headless_chromium). Fails when it cannot:
# CI sets ARCHBENCH_REQUIRE_CHROMIUM=1, so a missing browser is an error there, not a skip.
set -eu
command -v chromium >/dev/null || command -v chromium-browser >/dev/null && exit 0
command -v apt-get >/dev/null || { echo "error: no chromium and no apt-get to install it" >&2; exit 1; }
sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo -n"
$sudo_ apt-get -qq -o DPkg::Lock::Timeout=120 update >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo_ apt-get -y -qq -o DPkg::Lock::Timeout=120 \
    install --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
