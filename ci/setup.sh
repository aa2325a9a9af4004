#!/usr/bin/env bash
# The one set-up command (README): system packages, patchkit in a virtual environment, the caches.
#
# Run it as yourself, root or not. Only the system packages need root: apt-get runs directly
# as root, through sudo otherwise, and only when a package is missing. The Python side goes into
# .venv in this checkout, made with Debian's /usr/bin/python3 (which refuses pip installs outside
# a virtual environment, PEP 668); bin/patchkit runs it and is linked onto PATH as `patchkit`
# (/usr/local/bin as root, ~/.local/bin otherwise). Last, `patchkit setup` fills the cache;
# arguments go to it (--gpxe-from PATH, --freedos-media PATH). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3
venv=$here/.venv

say() { echo "setup: $*"; }
die() {
  echo "setup: error: $*" >&2
  exit 1
}

# Everything but apt-get writes into this checkout, the cache and the bin directory of whoever
# runs it: a `sudo bash ci/setup.sh` would leave root-owned files in a user's checkout.
if [ "$(stat -c %u "$here")" != "$(id -u)" ]; then
  die "$here belongs to $(stat -c %U "$here"): run the set-up as that user, without sudo (it asks sudo for apt-get itself)"
fi

packages=(
  python3 python3-venv ca-certificates git
  qemu-system-x86 qemu-utils build-essential syslinux syslinux-common mtools
  dosfstools busybox-static nasm cpio fdisk iproute2 vblade mmdebstrap e2fsprogs
  git-email chromium msmtp
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
    say "installing ${missing[*]}"
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
    say "installing ${missing[*]} (system packages need root: asking sudo)"
  else
    die "missing system packages: ${missing[*]}
  Installing them needs root, and sudo is not installed. As root, run:
    apt-get update && apt-get install -y ${missing[*]}
  then run \`bash ci/setup.sh\` again as yourself."
  fi
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  say "system packages present"
fi

# A virtual environment from Debian's python3; one made by another python is replaced.
if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")' 2>/dev/null; then
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    die "$venv exists and is not a virtual environment: move it away"
  fi
  say "creating $venv with $python"
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[test]"
say "patchkit $("$venv/bin/python" -c 'import patchkit; print(patchkit.__version__)') installed in $venv"

# `patchkit` on PATH: a link to bin/patchkit (which finds .venv beside it).
if [ "$(id -u)" -eq 0 ]; then bindir=/usr/local/bin; else bindir=$HOME/.local/bin; fi
link=$bindir/patchkit
mkdir -p "$bindir"
if [ -e "$link" ] && [ ! -L "$link" ]; then
  say "$link exists and is not a link: left alone (bin/patchkit in this checkout works)"
else
  ln -sfn "$here/bin/patchkit" "$link"
  say "linked $link -> $here/bin/patchkit"
  case ":$PATH:" in
    *":$bindir:"*) ;;
    *) say "$bindir is not on this shell's PATH: Debian's ~/.profile adds it in new login shells (bin/patchkit works now)" ;;
  esac
fi

# The caches: inputs it cannot reach are reported (MISSING), not fatal.
"$here/bin/patchkit" -C "$here" setup "$@"
