"""The pytest plugin: fixtures blockemu_daemon, blockemu_daemon_factory, blockemu_daemon_kind and qmp.

Which daemon: --qmp-daemon=blockemu|qsd|blockemu,qsd (or $BLOCKEMU_PYTEST_DAEMON);
with two, every test using these fixtures runs once against each. blockemu is
$BLOCKEMU or --blockemu (a .js file runs with node), default the repository's
dist/bin/blockemu.js. A daemon that cannot be started is a skip, except under
CI=true, where it is a failure.
"""

import os
import shutil
import tempfile

import pytest

from .daemon import KINDS, Daemon, daemon_available

ENV_DAEMON = "BLOCKEMU_PYTEST_DAEMON"


def pytest_addoption(parser):
    group = parser.getgroup("blockemu", "blockemu / qemu-storage-daemon fixtures")
    group.addoption(
        "--qmp-daemon",
        dest="qmp_daemon",
        default=None,
        help="daemon(s) the blockemu_daemon fixture starts: blockemu, qsd, or a comma list "
        "(each test runs once per daemon); default $%s or blockemu" % ENV_DAEMON,
    )
    group.addoption("--blockemu", dest="blockemu_path", default=None, help="blockemu's CLI (default $BLOCKEMU or dist/bin/blockemu.js)")


def daemon_kinds(config):
    value = config.getoption("qmp_daemon") or os.environ.get(ENV_DAEMON) or "blockemu"
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    if "both" in kinds:
        kinds = list(KINDS)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise pytest.UsageError("--qmp-daemon: expected blockemu, qsd or both, not %r" % value)
    return list(dict.fromkeys(kinds))


def pytest_configure(config):
    if config.getoption("blockemu_path"):
        os.environ["BLOCKEMU"] = os.path.abspath(config.getoption("blockemu_path"))
    config.addinivalue_line(
        "markers",
        "blockemu_daemon(args=(), clock=None): options for the blockemu_daemon fixture's daemon "
        "(qemu-storage-daemon's options; clock='virtual' is blockemu's --clock, left out for qsd)",
    )


def pytest_generate_tests(metafunc):
    if "blockemu_daemon_kind" in metafunc.fixturenames:
        if not any("blockemu_daemon_kind" in m.args[0] for m in metafunc.definition.iter_markers("parametrize") if m.args):
            metafunc.parametrize("blockemu_daemon_kind", daemon_kinds(metafunc.config))


@pytest.fixture
def blockemu_daemon_kind(request):
    """'blockemu' or 'qsd': the daemon this test runs against (parametrized by --qmp-daemon)."""
    return daemon_kinds(request.config)[0]


def _unavailable(why):
    if os.environ.get("CI") == "true":
        pytest.fail("%s (CI=true: a failure, not a skip)" % why, pytrace=False)
    pytest.skip(why)


@pytest.fixture
def blockemu_daemon_factory(request, blockemu_daemon_kind):
    """start(args=(), clock=None) -> Daemon: starts a daemon in a fresh temp dir; all are stopped and removed after the test."""
    started = []
    request.node._blockemu_daemons = started

    def start(args=(), clock=None):
        why = daemon_available(blockemu_daemon_kind)
        if why:
            _unavailable(why)
        # A short directory: a Unix socket path must fit in 108 bytes.
        directory = tempfile.mkdtemp(prefix="bemu-")
        try:
            d = Daemon(blockemu_daemon_kind, directory, args, clock=clock)
        except Exception:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
        shutil.rmtree(d.dir, ignore_errors=True)


@pytest.fixture
def blockemu_daemon(request, blockemu_daemon_factory):
    """A started daemon (options from the blockemu_daemon marker), with .dir, .socket, .kind, .client(), .stderr()."""
    marker = request.node.get_closest_marker("blockemu_daemon")
    return blockemu_daemon_factory(**(marker.kwargs if marker else {}))


@pytest.fixture
def qmp(blockemu_daemon):
    """A negotiated QMPClient on blockemu_daemon's socket."""
    client = blockemu_daemon.client()
    yield client
    client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for d in getattr(item, "_blockemu_daemons", ()):
            report.sections.append(("%s stderr (%s)" % (d.kind, " ".join(d.command)), d.stderr() or "(empty)"))
