#!/bin/sh
# patchkit-check: run by patchkit-check.service once multi-user.target is reached on the
# debian-system guest. Checks that the root file system is the virtio disk (driven by
# Linux's virtio_blk, found by the UUID on the kernel command line), reads the run's
# token from the disk's token partition, writes the result file, prints the marker on
# ttyS0 and powers off.

say() { echo "$*" > /dev/ttyS0; }
fail() {
    say "PATCHKIT-FAIL debian-system: $*"
    sync
    systemctl --no-block poweroff
    exit 1
}

root=$(findmnt -n -o SOURCE /)
uuid=$(findmnt -n -o UUID /)
case "$root" in
    /dev/vd?1) disk=${root%1} ;;
    *) fail "the root file system is $root, not the first partition of a virtio disk" ;;
esac
driver=$(basename "$(readlink -f "/sys/block/${disk#/dev/}/device/driver")")
[ "$driver" = virtio_blk ] || fail "$disk is driven by $driver, not virtio_blk"
grep -q "root=UUID=$uuid " /proc/cmdline || fail "the kernel was not told root=UUID=$uuid: $(cat /proc/cmdline)"
state=$(systemctl show -p ActiveState --value multi-user.target)
[ "$state" = active ] || fail "multi-user.target is $state"
token=$(head -c 512 "${disk}2" | tr -d '\000' | sed -n 's/^PKTOKEN \([A-Za-z0-9-]*\)$/\1/p')
[ -n "$token" ] || fail "no token on ${disk}2"
mkdir -p /var/lib/patchkit
echo "PATCHKIT-RESULT $token root=$root uuid=$uuid" > /var/lib/patchkit/result
sync
say "PATCHKIT-PASS $token"
systemctl --no-block poweroff
