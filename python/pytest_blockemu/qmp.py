"""A small synchronous QMP client (standard library only)."""

import json
import socket
import time


class QMPError(Exception):
    """A command's error reply: QEMU's error class and description."""

    def __init__(self, command, error_class, desc):
        super().__init__("%s: %s: %s" % (command, error_class, desc))
        self.command = command
        self.error_class = error_class
        self.desc = desc


class QMPTimeout(Exception):
    """No reply or event within the time asked for."""


class QMPClient:
    """One QMP connection: greeting, negotiation, commands by id, events kept in arrival order.

    Events that arrive while a command waits for its reply are kept; wait_event()
    and events() take them in order. Arguments given as keywords have '_' turned
    into '-' (job_id= is 'job-id'); pass arguments={...} for names that keep '_'.
    """

    def __init__(self, path, timeout=30.0, negotiate=True):
        self.path = str(path)
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        while True:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(self.path)
                break
            except ConnectionRefusedError:
                # Bound but not yet listening (the daemon is starting): try again until the deadline.
                self._sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self._buf = b""
        self._events = []
        self._next_id = 0
        self.greeting = self._read(time.monotonic() + timeout)
        if "QMP" not in self.greeting:
            raise QMPError("(greeting)", "Protocol", "not a QMP greeting: %r" % (self.greeting,))
        if negotiate:
            self.execute("qmp_capabilities")

    # -- wire
    def _read(self, deadline):
        """The next message, or QMPTimeout at the deadline; ConnectionError when the daemon hung up."""
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPTimeout("no message from %s in time" % self.path)
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise QMPTimeout("no message from %s in time" % self.path) from None
            if not chunk:
                raise ConnectionError("the daemon closed %s" % self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read(deadline)
        return json.loads(line.decode("utf-8"))

    def send(self, message):
        """Sends one message as it is (no id added)."""
        self._sock.sendall(json.dumps(message).encode("utf-8") + b"\n")

    # -- commands
    def execute(self, command, arguments=None, timeout=None, **kwargs):
        """Runs a command; returns its 'return' value or raises QMPError(class, desc)."""
        args = dict(arguments or {})
        for key, value in kwargs.items():
            args[key.replace("_", "-")] = value
        self._next_id += 1
        msg_id = "pytest-%d" % self._next_id
        msg = {"execute": command, "id": msg_id}
        if args:
            msg["arguments"] = args
        self.send(msg)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            m = self._read(deadline)
            if "event" in m:
                self._events.append(m)
            elif m.get("id") == msg_id:
                if "error" in m:
                    raise QMPError(command, m["error"].get("class"), m["error"].get("desc"))
                return m.get("return")

    # -- events
    def events(self, timeout=0.0):
        """Takes every event received so far (and those arriving within timeout seconds)."""
        deadline = time.monotonic() + timeout
        try:
            while timeout > 0:
                self._events.append(self._read(deadline))
        except QMPTimeout:
            pass
        out, self._events = self._events, []
        return out

    def wait_event(self, name, predicate=None, timeout=None):
        """Takes the first event called name (a name, or a tuple of names) satisfying predicate(event), if given.

        Waits up to timeout seconds (QMPTimeout then); events before it stay queued for later calls.
        """
        names = (name,) if isinstance(name, str) else tuple(name)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        checked = 0
        while True:
            for i in range(checked, len(self._events)):
                ev = self._events[i]
                if ev.get("event") in names and (predicate is None or predicate(ev)):
                    return self._events.pop(i)
            checked = len(self._events)
            m = self._read(deadline)
            if "event" in m:
                self._events.append(m)

    def wait_job(self, job_id, status="concluded", timeout=None):
        """Waits for the job's JOB_STATUS_CHANGE to status."""
        return self.wait_event(
            "JOB_STATUS_CHANGE",
            lambda e: e["data"]["id"] == job_id and e["data"]["status"] == status,
            timeout,
        )

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
