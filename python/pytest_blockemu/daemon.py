"""Starting and stopping blockemu's daemon or qemu-storage-daemon with one QMP monitor."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .qmp import QMPClient

#: The repository's built CLI (npm run build), used when BLOCKEMU is not set.
REPO_BLOCKEMU = Path(__file__).resolve().parents[2] / "dist" / "bin" / "blockemu.js"
KINDS = ("blockemu", "qsd")


class DaemonError(Exception):
    """The daemon did not start (its stderr is in the message)."""


def blockemu_command():
    """How to run blockemu: $BLOCKEMU (a .js file is run with node), else the repository's dist/bin/blockemu.js."""
    path = os.environ.get("BLOCKEMU") or str(REPO_BLOCKEMU)
    if path.endswith(".js"):
        return [os.environ.get("NODE", "node"), path]
    return [path]


def daemon_available(kind):
    """None when the daemon can be started, else why not."""
    if kind == "qsd":
        return None if shutil.which("qemu-storage-daemon") else "qemu-storage-daemon is not installed (Debian: qemu-system-common)"
    cmd = blockemu_command()
    if cmd[-1].endswith(".js") and not Path(cmd[-1]).exists():
        return "%s does not exist (run npm run build, or set BLOCKEMU)" % cmd[-1]
    if not shutil.which(cmd[0]):
        return "%s is not on PATH" % cmd[0]
    return None


class Daemon:
    """A running daemon: kind ('blockemu' or 'qsd'), its directory, its QMP socket and its stderr.

    Started with qemu-storage-daemon's options, the same for both kinds;
    clock='virtual' adds blockemu's --clock virtual (qemu-storage-daemon
    keeps real time, so keep sizes small where it runs).
    """

    def __init__(self, kind, directory, args=(), clock=None, start_timeout=15.0):
        if kind not in KINDS:
            raise ValueError("daemon kind must be one of %s, not %r" % (", ".join(KINDS), kind))
        self.kind = kind
        self.dir = Path(directory)
        self.socket = self.dir / "qmp.sock"
        self.stderr_path = self.dir / ("%s.stderr" % kind)
        self._clients = []
        self._stderr_text = None
        monitor = ["--chardev", "socket,id=pytest-qmp,path=%s,server=on,wait=off" % self.socket, "--monitor", "chardev=pytest-qmp"]
        if kind == "qsd":
            cmd = ["qemu-storage-daemon"] + list(args) + monitor
        else:
            cmd = blockemu_command() + ["daemon"] + list(args) + monitor
            if clock is not None:
                cmd += ["--clock", clock]
        self.command = cmd
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(self.dir), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr)
        try:
            self._wait_socket(start_timeout)
        except Exception:
            self.stop()
            raise

    def _wait_socket(self, timeout):
        # Only the socket file is waited for: a probe connection would take qemu-storage-daemon's one
        # monitor slot, and the first real client could wait for the daemon to notice the probe left.
        deadline = time.monotonic() + timeout
        while not os.path.exists(str(self.socket)):
            if self.proc.poll() is not None:
                raise DaemonError("%s exited with status %s before opening its QMP socket:\n%s" % (self.kind, self.proc.returncode, self.stderr()))
            if time.monotonic() > deadline:
                raise DaemonError("%s did not open %s within %.0f s:\n%s" % (self.kind, self.socket, timeout, self.stderr()))
            time.sleep(0.02)

    def stderr(self):
        """What the daemon wrote on stderr so far (kept after stop(), when its directory may be gone)."""
        if self._stderr_text is not None:
            return self._stderr_text
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, **kwargs):
        """A new negotiated QMP connection (qemu-storage-daemon serves one at a time: close one before the next)."""
        c = QMPClient(self.socket, **kwargs)
        self._clients.append(c)
        return c

    def stop(self, timeout=15.0):
        """Closes the clients, stops the daemon (SIGTERM, then SIGKILL) and returns its exit status."""
        for c in self._clients:
            c.close()
        self._clients = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        self._stderr_text = self.stderr()
        return self.proc.returncode

    def __repr__(self):
        return "<Daemon %s %s>" % (self.kind, self.socket)
