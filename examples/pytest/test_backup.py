"""A backup tool's test suite, the way its maintainers would write it: QMP over the
daemon's socket, images checked with qemu-img. It runs unchanged against blockemu
and qemu-storage-daemon (python3 -m pytest examples/pytest --qmp-daemon=blockemu,qsd)
and must pass the same way on both.
"""

import json
import subprocess
import time

import pytest

from pytest_blockemu import QMPError

KiB = 1 << 10
MiB = 1 << 20
SIZE = 1 * MiB
CLUSTER = 64 * KiB


# ----------------------------------------------------------------- helpers
def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def qemu_img(*args):
    r = run("qemu-img", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def make_disk(path, writes=(), backing=None):
    """A qcow2 image of SIZE with (pattern, offset, length) written into it."""
    extra = ["-b", str(backing), "-F", "qcow2"] if backing else []
    qemu_img("create", "-q", "-f", "qcow2", *extra, str(path), str(SIZE))
    for pattern, offset, length in writes:
        r = run("qemu-io", "-f", "qcow2", "-c", "write -P %d %d %d" % (pattern, offset, length), str(path))
        assert r.returncode == 0, r.stderr
    return path


def same_content(a, b):
    """qemu-img compare (read-only, sharing the images the daemon has open)."""
    return run("qemu-img", "compare", "-U", str(a), str(b)).returncode == 0


def allocated_here(path):
    """Bytes the image itself (not its backing file) holds data for."""
    extents = json.loads(qemu_img("map", "-U", "--output=json", str(path)))
    return sum(e["length"] for e in extents if e["data"] and e["depth"] == 0)


def add_qcow2(qmp, node, path, file=None):
    qmp.execute("blockdev-add", driver="qcow2", node_name=node, file=file or {"driver": "file", "filename": str(path)})


def bitmap_count(qmp, node, name):
    for n in qmp.execute("query-named-block-nodes", flat=True):
        if n["node-name"] == node:
            return next(b["count"] for b in n.get("dirty-bitmaps", []) if b["name"] == name)
    raise KeyError(node)


def guest_write(qmp, daemon, node, pattern, offset, length):
    """Writes into a disk the daemon has open, as a guest would: through a writable NBD export."""
    sock = daemon.dir / "nbd.sock"
    if not sock.exists():
        qmp.execute("nbd-server-start", addr={"type": "unix", "data": {"path": str(sock)}})
    qmp.execute("block-export-add", type="nbd", id="w-" + node, node_name=node, writable=True)
    r = run("qemu-io", "-f", "raw", "-c", "write -P %d %d %d" % (pattern, offset, length), "nbd+unix:///%s?socket=%s" % (node, sock))
    qmp.execute("block-export-del", id="w-" + node)
    qmp.wait_event("BLOCK_EXPORT_DELETED", lambda e: e["data"]["id"] == "w-" + node)
    assert r.returncode == 0, r.stderr


def job_result(qmp, job):
    """Waits for the job to end: its BLOCK_JOB_COMPLETED or BLOCK_JOB_CANCELLED event."""
    return qmp.wait_event(("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"), lambda e: e["data"]["device"] == job, timeout=60)


def full_backup_with_bitmap(qmp, daemon, disks):
    """One transaction: a bitmap on every disk and a full backup of each, started at the same point in time."""
    actions = []
    for node in disks:
        actions.append({"type": "block-dirty-bitmap-add", "data": {"node": node, "name": "inc"}})
    for node in disks:
        target = daemon.dir / ("%s-full.qcow2" % node)
        make_disk(target)
        add_qcow2(qmp, node + "-full", target)
        actions.append({"type": "blockdev-backup", "data": {"device": node, "target": node + "-full", "sync": "full", "job-id": "full-" + node}})
    qmp.execute("transaction", actions=actions)
    for node in disks:
        ev = job_result(qmp, "full-" + node)
        assert ev["event"] == "BLOCK_JOB_COMPLETED" and "error" not in ev["data"], ev
        assert ev["data"]["offset"] == ev["data"]["len"] == SIZE
        qmp.execute("blockdev-del", node_name=node + "-full")


@pytest.fixture
def disks(qmp, blockemu_daemon):
    """Two disks with data, open in the daemon as disk0 and disk1."""
    for i, node in enumerate(("disk0", "disk1")):
        path = make_disk(blockemu_daemon.dir / (node + ".qcow2"), [(1 + i, 0, 256 * KiB), (5 + i, 512 * KiB, 128 * KiB)])
        add_qcow2(qmp, node, path)
    return blockemu_daemon.dir


# ------------------------------------------------------------------- tests
def test_two_disks_backed_up_consistently_in_one_transaction(qmp, blockemu_daemon, disks):
    full_backup_with_bitmap(qmp, blockemu_daemon, ["disk0", "disk1"])
    for node in ("disk0", "disk1"):
        assert same_content(disks / (node + ".qcow2"), disks / (node + "-full.qcow2"))
        # The bitmap started with the backup and nothing has been written since.
        assert bitmap_count(qmp, node, "inc") == 0
    assert qmp.execute("query-block-jobs") == []


def test_incremental_backup_copies_only_what_the_bitmap_marks(qmp, blockemu_daemon, disks):
    full_backup_with_bitmap(qmp, blockemu_daemon, ["disk0"])
    guest_write(qmp, blockemu_daemon, "disk0", 9, 2 * CLUSTER, 2 * CLUSTER)
    assert bitmap_count(qmp, "disk0", "inc") == 2 * CLUSTER

    inc = make_disk(disks / "disk0-inc.qcow2", backing=disks / "disk0-full.qcow2")
    add_qcow2(qmp, "disk0-inc", inc)
    qmp.execute("blockdev-backup", device="disk0", target="disk0-inc", sync="incremental", bitmap="inc", job_id="inc0")
    ev = job_result(qmp, "inc0")
    assert "error" not in ev["data"] and ev["data"]["offset"] == ev["data"]["len"]
    qmp.execute("blockdev-del", node_name="disk0-inc")

    assert bitmap_count(qmp, "disk0", "inc") == 0
    assert allocated_here(inc) == 2 * CLUSTER
    assert same_content(disks / "disk0.qcow2", inc)  # the increment over the full backup is the disk


def test_a_failing_target_keeps_the_bitmap(qmp, blockemu_daemon, disks):
    qmp.execute("block-dirty-bitmap-add", node="disk0", name="inc")
    guest_write(qmp, blockemu_daemon, "disk0", 7, 0, 3 * CLUSTER)
    assert bitmap_count(qmp, "disk0", "inc") == 3 * CLUSTER

    bad = make_disk(disks / "bad.qcow2")
    add_qcow2(qmp, "bad", bad, file={"driver": "blkdebug", "image": {"driver": "file", "filename": str(bad)}, "inject-error": [{"event": "write_aio", "errno": 5}]})
    qmp.execute("blockdev-backup", device="disk0", target="bad", sync="incremental", bitmap="inc", job_id="inc-bad")
    ev = job_result(qmp, "inc-bad")
    assert ev["event"] == "BLOCK_JOB_COMPLETED"
    assert ev["data"]["error"] == "Input/output error"
    assert bitmap_count(qmp, "disk0", "inc") == 3 * CLUSTER  # nothing lost: the next backup copies it all again

    good = make_disk(disks / "good.qcow2")
    add_qcow2(qmp, "good", good)
    qmp.execute("blockdev-backup", device="disk0", target="good", sync="incremental", bitmap="inc", job_id="inc-good")
    assert "error" not in job_result(qmp, "inc-good")["data"]
    assert bitmap_count(qmp, "disk0", "inc") == 0
    qmp.execute("blockdev-del", node_name="good")
    assert allocated_here(good) == 3 * CLUSTER


SPEED = 512 * KiB


@pytest.mark.blockemu_daemon(clock="virtual")
def test_a_rate_limited_backup_makes_steady_progress(qmp, blockemu_daemon, disks):
    """On blockemu the job runs on a virtual clock (seconds of job time in a blink); on qemu-storage-daemon in real time."""
    virtual = blockemu_daemon.kind == "blockemu"
    now = (lambda: qmp.execute("__org.blockemu_query-clock")["ns"] / 1e9) if virtual else time.monotonic
    make_disk(disks / "slow.qcow2")
    add_qcow2(qmp, "slow", disks / "slow.qcow2")
    started = now()
    qmp.execute("blockdev-backup", device="disk0", target="slow", sync="full", job_id="slow0", speed=SPEED)
    offsets = []
    while True:
        jobs = qmp.execute("query-block-jobs")
        if not jobs:
            break
        assert jobs[0]["speed"] == SPEED and jobs[0]["len"] == SIZE
        offsets.append(jobs[0]["offset"])
        time.sleep(0.05)
    ev = job_result(qmp, "slow0")
    elapsed = now() - started
    assert "error" not in ev["data"] and ev["data"]["offset"] == SIZE and ev["data"]["speed"] == SPEED
    assert offsets == sorted(offsets) and all(o <= SIZE for o in offsets)
    # The limiter held it back: the data after the first slice's allowance cannot come faster than SPEED.
    assert elapsed >= (SIZE - SPEED) / SPEED * 0.9, elapsed
    qmp.execute("blockdev-del", node_name="slow")
    assert same_content(disks / "disk0.qcow2", disks / "slow.qcow2")


def test_a_cancelled_incremental_backup_keeps_the_bitmap(qmp, blockemu_daemon):
    big = 4 * MiB
    qemu_img("create", "-q", "-f", "qcow2", str(blockemu_daemon.dir / "big.qcow2"), str(big))
    qemu_img("create", "-q", "-f", "qcow2", str(blockemu_daemon.dir / "partial.qcow2"), str(big))
    add_qcow2(qmp, "big", blockemu_daemon.dir / "big.qcow2")
    add_qcow2(qmp, "partial", blockemu_daemon.dir / "partial.qcow2")
    qmp.execute("block-dirty-bitmap-add", node="big", name="inc")
    guest_write(qmp, blockemu_daemon, "big", 3, 0, big)
    # 64 KiB/s: the job would take a minute; it is cancelled while it runs.
    qmp.execute("blockdev-backup", device="big", target="partial", sync="incremental", bitmap="inc", job_id="inc1", speed=64 * KiB)
    qmp.wait_job("inc1", "running")
    qmp.execute("block-job-cancel", device="inc1")
    ev = job_result(qmp, "inc1")
    assert ev["event"] == "BLOCK_JOB_CANCELLED"
    assert ev["data"]["len"] == big and ev["data"]["offset"] < big
    assert qmp.execute("query-block-jobs") == []
    assert bitmap_count(qmp, "big", "inc") == big
    with pytest.raises(QMPError) as err:
        qmp.execute("block-job-cancel", device="inc1")
    assert err.value.error_class == "DeviceNotActive"
    assert err.value.desc == "Block job 'inc1' not found"
