#!/bin/busybox sh
# patchkit Debian guest: load the virtio and FAT modules, check the disk, report on COM1.
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

i=0
while [ ! -b /dev/vda1 ]; do
    i=$((i + 1))
    [ "$i" -gt 300 ] && fail "no /dev/vda1 after 30 s"
    sleep 0.1
done

mount -t vfat /dev/vda1 /mnt || fail "cannot mount /dev/vda1"
known=$(sha256sum /mnt/KNOWN.BIN | cut -d ' ' -f 1)
[ "$known" = "$(cat /known.sha256)" ] || fail "KNOWN.BIN reads back as $known"
[ -f /mnt/TOKEN.TXT ] || fail "no TOKEN.TXT on the disk"
token=$(cat /mnt/TOKEN.TXT)
echo "PATCHKIT-RESULT $token $known" > /mnt/RESULT.TXT || fail "cannot write RESULT.TXT"
sync
umount /mnt || fail "cannot unmount /dev/vda1"
say "PATCHKIT-PASS $token"
finish
