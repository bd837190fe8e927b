"""pytest fixtures for backup-tool tests over QMP, against blockemu or qemu-storage-daemon."""

from .daemon import Daemon, DaemonError
from .qmp import QMPClient, QMPError, QMPTimeout

__all__ = ["Daemon", "DaemonError", "QMPClient", "QMPError", "QMPTimeout"]
