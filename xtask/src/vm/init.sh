#!/bin/busybox sh
# Stage 1 of the vm-test guest, /init of the initramfs that xtask writes
# (xtask/src/vm/initramfs.rs). It loads the modules that the root filesystem
# needs (virtio, 9p, overlay) from the kernel package, mounts this machine's
# root filesystem (shared read-only over 9p) under a tmpfs overlay, so the
# guest can write anywhere and nothing reaches the host, and hands over to
# stage 2 (`xtask vm-guest`, xtask/src/vm/guest.rs) as the new PID 1.
# On any failure it exits: the kernel panics (panic=-1) and qemu quits (-no-reboot).

/bin/busybox mkdir -p /bin /proc /sys /lower /upper /newroot
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "vm-test stage 1: $*"
    exit 1
}

mount -t proc proc /proc || fail "mounting /proc"
mount -t sysfs sysfs /sys || fail "mounting /sys"
mount -t devtmpfs devtmpfs /dev || fail "mounting /dev"

# The module files, one per line, in dependency order.
while read -r module; do
    insmod "/modules/$module" || fail "insmod $module"
done < /modules/order

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose wanroot /lower \
    || fail "mounting the host's root filesystem (9p tag wanroot)"
mount -t tmpfs -o mode=0755 upper /upper || fail "mounting the overlay's tmpfs"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work root /newroot \
    || fail "mounting the overlay root"

# STAGE2 (the xtask binary) and PLAN (the JSON plan), written by the host.
. /stage2.env
[ -x "/newroot$STAGE2" ] || fail "$STAGE2 is not visible in the guest"
umount /proc /sys /dev 2>/dev/null
exec switch_root /newroot "$STAGE2" vm-guest "$PLAN"
