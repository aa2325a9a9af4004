#!/usr/bin/env bash
# Set-up command 1: system packages and the Python package (with test extras).
# Run as root (or with sudo) on Debian 12. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  qemu-system-x86 qemu-utils build-essential syslinux syslinux-common mtools
  dosfstools busybox-static nasm cpio fdisk git iproute2 vblade
  git-email chromium
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "setup: system packages present"
fi

python3 -m pip install -q --disable-pip-version-check -e "$here[test]"
echo "setup: patchkit $(python3 -c 'import patchkit; print(patchkit.__version__)') installed"
