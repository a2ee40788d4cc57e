"""`make run`'s process manager: the Procfile under honcho, used as a library, with three
things its command line cannot do:

- A stop (Ctrl-C, SIGTERM) sends SIGTERM to each process itself, not to its process group,
  and waits up to STOP_GRACE_SECONDS (20) before SIGKILL. honcho's own stop signals the whole
  group, so a Celery worker's pool processes die under it mid-shutdown and the worker then
  hangs until honcho's 5 s are up; here each program stops its own children, in order. (Every
  Procfile line starts with `exec`, so the process honcho started is the program itself.)
- Once GET /api/health/ answers 200 (web, database, broker, a worker and beat all up), the
  banner seed_demo wrote (URLs, logins, tokens, the first order's curl) is printed again, so
  it stands under the start-up output instead of scrolling away above it.
- A stop asked for, in which every process ended cleanly within the grace time, exits 0;
  honcho would exit 130 (143 for SIGTERM) whatever happened, a crash before it included.

Usage: procs.py PROCFILE PORT BANNER_FILE
"""

import contextlib
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import honcho.manager
from honcho.compat import ProcessManager
from honcho.environ import expand_processes, parse_procfile
from honcho.printer import Printer

# How a process may end in a clean stop: by itself, or by the SIGTERM (SIGINT) it was sent.
CLEAN_ENDS = {0, -signal.SIGTERM, -signal.SIGINT}


class EachProgram(ProcessManager):
    """SIGTERM to the program alone; SIGKILL, the last resort, still to its whole group."""

    def terminate(self, pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


class Manager(honcho.manager.Manager):
    def __init__(self, printer):
        super().__init__(printer)
        self._procmgr = EachProgram()

    def exit_code(self) -> int:
        """0 when every process ended cleanly; else the first failure's code (128 + the
        signal for one killed, SIGKILL at the end of the grace time included). honcho's own
        code is 130 or 143 for any stop it was signalled during, a crash before it included."""
        codes = [p.get("returncode") for p in self._processes.values()]
        failed = [code for code in codes if code not in CLEAN_ENDS]
        if not failed:
            return 0
        code = failed[0]
        return 1 if code is None else code if code > 0 else 128 - code


def print_banner_when_healthy(port: str, banner: Path, timeout: float = 600) -> None:
    host = os.environ.get("BIND_ADDRESS", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):  # every interface: this machine's is one of them
        host = "127.0.0.1"
    elif ":" in host:  # an IPv6 address
        host = f"[{host}]"
    url = f"http://{host}:{port}/api/health/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    text = banner.read_text() if banner.is_file() else ""
                    sys.stdout.write(f"\n  All processes are up and healthy.\n{text}")
                    sys.stdout.flush()
                    return
        except (urllib.error.URLError, OSError):
            pass  # starting, or a dependency still down (503)
        time.sleep(0.5)


def main(procfile: str, port: str, banner: str) -> int:
    honcho.manager.KILL_WAIT = float(os.environ.get("STOP_GRACE_SECONDS", "20"))
    manager = Manager(Printer(sys.stdout, colour=False, prefix=True))
    processes = parse_procfile(Path(procfile).read_text()).processes
    for process in expand_processes(processes, port=int(port)):
        manager.add_process(process.name, process.cmd, env={**os.environ, **process.env})
    threading.Thread(
        target=print_banner_when_healthy, args=(port, Path(banner)), daemon=True
    ).start()
    manager.loop()
    return manager.exit_code()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
