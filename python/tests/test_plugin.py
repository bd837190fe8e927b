"""The plugin's fixtures and QMP client, against each daemon --qmp-daemon names."""

from pathlib import Path

import pytest

from pytest_blockemu import DaemonError, QMPError, QMPTimeout

MiB = 1 << 20
PLUGIN_DIR = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytest run in a subprocess that finds the plugin."""
    monkeypatch.setenv("PYTHONPATH", PLUGIN_DIR)
    return pytester


def test_execute_returns_and_errors_carry_class_and_desc(qmp, blockemu_daemon):
    version = qmp.execute("query-version")
    assert (version["qemu"]["major"], version["qemu"]["minor"]) == (7, 2)
    with pytest.raises(QMPError) as err:
        qmp.execute("block-dirty-bitmap-add", node="nosuch", name="b0")
    assert err.value.error_class == "GenericError"
    assert err.value.desc == "Cannot find device='nosuch' nor node-name='nosuch'"
    assert err.value.command == "block-dirty-bitmap-add"
    assert blockemu_daemon.socket.exists()


def test_keyword_arguments_take_hyphens(qmp):
    qmp.execute("blockdev-add", driver="null-co", node_name="n0", size=MiB)
    qmp.execute("blockdev-add", arguments={"driver": "null-co", "node-name": "n1", "size": MiB})
    names = {n["node-name"] for n in qmp.execute("query-named-block-nodes", flat=True)}
    assert {"n0", "n1"} <= names


def test_wait_event_keeps_other_events_queued(qmp):
    for name in ("src", "tgt"):
        qmp.execute("blockdev-add", driver="null-co", node_name=name, size=MiB)
    qmp.execute("blockdev-backup", device="src", target="tgt", sync="full", job_id="j0")
    done = qmp.wait_event("BLOCK_JOB_COMPLETED", lambda e: e["data"]["device"] == "j0", timeout=20)
    assert done["data"]["offset"] == done["data"]["len"] == MiB
    qmp.wait_job("j0", "null")
    # The status changes that came before those two are still there, in order.
    statuses = [e["data"]["status"] for e in qmp.events() if e["event"] == "JOB_STATUS_CHANGE"]
    assert statuses[:2] == ["created", "running"]
    assert statuses[-1] == "concluded"
    with pytest.raises(QMPTimeout):
        qmp.wait_event("BLOCK_JOB_COMPLETED", timeout=0.2)


def test_a_daemon_that_cannot_start_says_why(blockemu_daemon_factory):
    with pytest.raises(DaemonError) as err:
        blockemu_daemon_factory(args=["--blockdev", "driver=qcow2,node-name=x,file.driver=file,file.filename=missing.qcow2"])
    assert "missing.qcow2" in str(err.value)


@pytest.mark.blockemu_daemon(args=["--blockdev", "driver=null-co,node-name=fromcli,size=4096"])
def test_the_marker_passes_options(qmp):
    assert "fromcli" in {n["node-name"] for n in qmp.execute("query-named-block-nodes")}


def test_a_failing_test_reports_the_daemon_stderr(inner):
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.blockemu_daemon(args=["--log-level", "info"])
        def test_fails(qmp, blockemu_daemon):
            qmp.execute("quit")
            blockemu_daemon.proc.wait(10)
            assert False, "on purpose"
        """
    )
    result = inner.runpytest_subprocess("-p", "pytest_blockemu.plugin", "--qmp-daemon", "blockemu")
    result.assert_outcomes(failed=1)
    # The report's section: which daemon, its command line, what it wrote.
    result.stdout.fnmatch_lines(["*blockemu stderr (*blockemu.js daemon --log-level info --chardev socket,id=pytest-qmp*", '*"msg":"daemon started"*'])


def test_each_daemon_named_runs_each_test(inner):
    inner.makepyfile(
        """
        def test_kind(blockemu_daemon):
            print("KIND", blockemu_daemon.kind)
        """
    )
    result = inner.runpytest_subprocess("-p", "pytest_blockemu.plugin", "--qmp-daemon", "blockemu,qsd", "-v")
    result.stdout.fnmatch_lines(["*test_kind?blockemu? PASSED*", "*test_kind?qsd? PASSED*"])
