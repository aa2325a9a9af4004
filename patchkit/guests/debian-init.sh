#!/bin/busybox sh
# patchkit Debian guest: load the disk and FAT modules, check the disk, report on COM1.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "$*" > /dev/ttyS0; }
finish() { sync; poweroff -f; sleep 5; }
fail() { say "PATCHKIT-FAIL $*"; finish; }

for m in $(cat /modules.order); do
    insmod "/modules/$m.ko" || fail "insmod $m"
done

# The guest disk is the FAT partition holding KNOWN.BIN: it need not be /dev/vda
# (blank virtio disks may sit at lower PCI slots, or the disk may be on IDE).
find_disk() {
    for part in /dev/vd?1 /dev/sd?1; do
        [ -b "$part" ] || continue
        mount -t vfat "$part" /mnt 2>/dev/null || continue
        [ -f /mnt/KNOWN.BIN ] && disk=$part && return 0
        umount /mnt
    done
    return 1
}

i=0
until find_disk; do
    i=$((i + 1))
    [ "$i" -gt 300 ] && fail "no FAT partition with KNOWN.BIN after 30 s (block devices: $(ls /sys/block | tr '\n' ' '))"
    sleep 0.1
done
say "patchkit: the guest disk is $disk"
known=$(sha256sum /mnt/KNOWN.BIN | cut -d ' ' -f 1)
[ "$known" = "$(cat /known.sha256)" ] || fail "KNOWN.BIN reads back as $known"
[ -f /mnt/TOKEN.TXT ] || fail "no TOKEN.TXT on the disk"
token=$(cat /mnt/TOKEN.TXT)
echo "PATCHKIT-RESULT $token $known" > /mnt/RESULT.TXT || fail "cannot write RESULT.TXT"
sync
umount /mnt || fail "cannot unmount $disk"
say "PATCHKIT-PASS $token"
finish
