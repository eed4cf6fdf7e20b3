#!/usr/bin/env bash
# Install Debian's Fashion-MNIST package (offline copy of the data set) when it is missing.
# Never fails: without it archbench downloads the data through torchvision when online.
set -u
[ -d /usr/share/datasets/fashion-mnist ] && exit 0
command -v apt-get >/dev/null || exit 0
sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo -n"
{ $sudo_ apt-get -qq -o DPkg::Lock::Timeout=120 update \
    && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get -y -qq -o DPkg::Lock::Timeout=120 \
        install dataset-fashion-mnist; } >/dev/null 2>&1 \
    || echo "note: could not install dataset-fashion-mnist; archbench will try to download Fashion-MNIST" >&2
exit 0
