#!/usr/bin/env python3
"""Run one command on a new pseudo-terminal, for tests/e2e/_pty.ts.

Usage: _pty.py COLS ROWS -- COMMAND ARGS...

The command gets a fresh session whose controlling terminal is the pty
(as a login shell would give it). This helper talks JSON lines:

  stdin   {"write": BASE64}     bytes to type (written to the pty master)
          {"signal": "SIGTERM"} a signal to the command's process
          {"termios": true}     report the pty's terminal modes
          {"close": true}       SIGKILL the command's group if alive, exit
  stdout  {"started": PID}
          {"out": BASE64}       bytes the command wrote to the terminal
          {"termios": {...}}    icanon, echo, isig, icrnl, opost (booleans)
          {"exit": {"code": N, "signal": NAME}}  once, when it ended
          {"error": TEXT}

The helper keeps the slave side open, so the terminal outlives the command
and its modes can be read after it exited (what `stty -a` on that terminal
would show). End of stdin acts as close.
"""

import base64
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def modes(fd):
    iflag, oflag, _cflag, lflag, _ispeed, _ospeed, _cc = termios.tcgetattr(fd)
    return {
        "icanon": bool(lflag & termios.ICANON),
        "echo": bool(lflag & termios.ECHO),
        "isig": bool(lflag & termios.ISIG),
        "icrnl": bool(iflag & termios.ICRNL),
        "opost": bool(oflag & termios.OPOST),
    }


def main():
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--":
        emit({"error": "usage: _pty.py COLS ROWS -- COMMAND ARGS..."})
        return 2
    cols, rows, cmd = int(args[0]), int(args[1]), args[3:]
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def become_session_leader():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(
            cmd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=become_session_leader,
            close_fds=True,
        )
    except OSError as e:
        emit({"error": "cannot start %s: %s" % (cmd[0], e)})
        return 1
    emit({"started": proc.pid})
    os.set_blocking(master, False)
    os.set_blocking(0, False)
    pending = b""  # bytes to type, not yet taken by the pty
    inbuf = b""
    exited = False
    closing = False

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            emit({"out": base64.b64encode(data).decode()})

    while not closing:
        if not exited and proc.poll() is not None:
            drain()
            exited = True
            rc = proc.returncode
            emit({"exit": {
                "code": rc if rc >= 0 else None,
                "signal": signal.Signals(-rc).name if rc < 0 else None,
            }})
        wants_write = [master] if pending else []
        r, w, _ = select.select([master, 0], wants_write, [], 0.05)
        if master in r:
            drain()
        if master in w and pending:
            try:
                n = os.write(master, pending[:4096])
                pending = pending[n:]
            except BlockingIOError:
                pass
            except OSError as e:
                emit({"error": "write: %s" % e})
                pending = b""
        if 0 in r:
            try:
                chunk = os.read(0, 1 << 20)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                closing = True
            elif chunk:
                inbuf += chunk
                while b"\n" in inbuf:
                    line, inbuf = inbuf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if "write" in msg:
                        pending += base64.b64decode(msg["write"])
                    elif "signal" in msg:
                        if proc.poll() is None:
                            os.kill(proc.pid, getattr(signal, msg["signal"]))
                    elif "termios" in msg:
                        emit({"termios": modes(slave)})
                    elif "close" in msg:
                        closing = True
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    os.close(master)
    os.close(slave)
    return 0


if __name__ == "__main__":
    sys.exit(main())
