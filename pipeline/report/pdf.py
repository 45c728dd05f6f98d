"""Print a report to PDF: headless Chromium through its DevTools protocol, else WeasyPrint.

Every printed page carries a running header (audit, scope, period and its status; rule set, data through, run id)
and "Page n of N".
Chromium's print does not lay out CSS ``@page`` margin boxes in every version, so the header and
footer are Chromium's own print templates (``Page.printToPDF`` with ``displayHeaderFooter``), sent
over ``--remote-debugging-pipe`` (file descriptors 3 and 4, NUL-terminated JSON): no extra library,
no network port. Chromium is started with ``posix_spawn`` (its pipe ends placed on 3 and 4 by
the spawn's own file actions: safe in this multi-threaded process). WeasyPrint lays out margin
boxes, so it gets the same text as an ``@page`` sheet.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import markupsafe

from pipeline import faults, ownership
from pipeline.errors import ReportError, printable
from pipeline.report.paper import PAPERS, Paper

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PRINT_TIMEOUT_S = 300
_TEMPLATE_STYLE = "font: 8px system-ui, 'DejaVu Sans', Arial, sans-serif; color: #444; width: 100%; margin: 0 0.4in;"


@dataclass(frozen=True)
class RunningHeader:
    """What every printed page says at its top (left and right) and bottom."""

    left: str  # e.g. "<audit short title> · All departments · 2026-06 (provisional)"
    right: str  # e.g. "rule set <audit>-2026.11.0 · data through 2026-08-31 · run 20261129T173116Z-7732d6"


def find_chromium() -> str | None:
    """$ORDER_AUDIT_CHROMIUM (a program's path or name), else the first Chromium or Chrome on PATH; None: neither.
    A setting that names no program is one line: a missing path was a traceback after the whole run, /dev/zero
    a 'could not write ... free space' line that sent the reader to the wrong place."""
    override = os.environ.get("ORDER_AUDIT_CHROMIUM")
    if override:
        found = shutil.which(override)
        if found is None:
            raise ReportError(
                f"ORDER_AUDIT_CHROMIUM={printable(override)}: no such program, or not a file this user may run;"
                " set it to a Chromium or Chrome binary, or unset it"
            )
        return found
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pdf_engine() -> str:
    """'chromium' or 'weasyprint', whichever can print here; else a ReportError saying what to install."""
    if find_chromium():
        return "chromium"
    try:
        import weasyprint  # noqa: F401, PLC0415 - optional engine
    except (ImportError, OSError):
        raise ReportError(
            "--pdf needs a PDF engine: install Chromium (Debian/Ubuntu: "
            "`apt-get install -y chromium`) or WeasyPrint with its system libraries "
            "(`pip install weasyprint` and `apt-get install -y libpango-1.0-0 libpangoft2-1.0-0`), "
            "or set ORDER_AUDIT_CHROMIUM to a Chromium/Chrome binary; or run without --pdf"
        ) from None
    return "weasyprint"


def write_pdf(html_path: Path, pdf_path: Path, header: RunningHeader | None = None, paper: Paper = PAPERS["a4"]) -> Path:
    """The HTML as a landscape PDF on ``paper`` with the running header and page numbers on every page."""
    header = header or RunningHeader(left=Path(html_path).stem, right="")
    if pdf_engine() == "chromium":
        data = _chromium_print(find_chromium(), Path(html_path), header, paper)
        tmp = pdf_path.with_name(f".{pdf_path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, pdf_path)
        return pdf_path
    import weasyprint  # noqa: PLC0415 - optional engine, checked by pdf_engine()

    weasyprint.HTML(filename=str(html_path)).write_pdf(
        str(pdf_path), stylesheets=[weasyprint.CSS(string=_margin_boxes(header, paper))]
    )
    return pdf_path


def _templates(header: RunningHeader) -> tuple[str, str]:
    esc = markupsafe.escape
    top = (
        f'<div style="{_TEMPLATE_STYLE} display: flex; justify-content: space-between;">'
        f"<span>{esc(header.left)}</span><span>{esc(header.right)}</span></div>"
    )
    bottom = (
        f'<div style="{_TEMPLATE_STYLE} text-align: right;">Page <span class="pageNumber"></span> of '
        '<span class="totalPages"></span></div>'
    )
    return top, bottom


def _css_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _margin_boxes(header: RunningHeader, paper: Paper) -> str:
    return (
        f"@page {{ size: {paper.css_size}; margin: 14mm 10mm 12mm 10mm;"
        f" @top-left {{ content: {_css_string(header.left)}; font-size: 8pt; color: #444; }}"
        f" @top-right {{ content: {_css_string(header.right)}; font-size: 8pt; color: #444; }}"
        ' @bottom-right { content: "Page " counter(page) " of " counter(pages); font-size: 8pt; color: #444; } }'
    )


class _Pipe:
    """Chromium's DevTools pipe: commands out on one descriptor, replies and events in on the other."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self._w, self._r, self._deadline = write_fd, read_fd, deadline
        self._buf = b""
        self._next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ReportError(f"Chromium could not print the report ({method}: {reply['error'].get('message')})")
                return reply.get("result", {})

    def wait_event(self, method: str, session: str) -> None:
        while True:
            msg = self._read()
            if msg.get("method") == method and msg.get("sessionId") == session:
                return

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            left = self._deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise ReportError(f"Chromium did not finish printing within {PRINT_TIMEOUT_S} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise ReportError("Chromium stopped before it printed the report")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)


def _chromium_print(chromium: str, html_path: Path, header: RunningHeader, paper: Paper) -> bytes:
    top, bottom = _templates(header)
    child_r, parent_w = os.pipe()
    parent_r, child_w = os.pipe()
    # the child's ends moved above 9, so that placing them on 3 and 4 never overwrites one with the other
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (child_r, child_w)]
    for fd in (child_r, child_w):
        os.close(fd)
    # marked and held: a run killed while Chromium prints leaves its profile, which the next command removes
    with ownership.held_temp_dir("order-audit-chromium-") as profile:
        argv = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, moved[0], 3),
            (os.POSIX_SPAWN_DUP2, moved[1], 4),
        ]
        try:
            pid = os.posix_spawn(argv[0], argv, _chromium_env(profile), file_actions=actions)
        finally:
            for fd in moved:
                os.close(fd)
        pipe = _Pipe(parent_w, parent_r, time.monotonic() + PRINT_TIMEOUT_S)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            pipe.call("Page.enable", session=session)
            pipe.call("Page.navigate", {"url": html_path.resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", session)
            faults.maybe_fail("mid_pdf")  # Chromium running, its profile written
            params = dict(
                paper.pdf_page(), printBackground=True, displayHeaderFooter=True, headerTemplate=top, footerTemplate=bottom
            )
            data = pipe.call("Page.printToPDF", params, session=session)["data"]
            pipe.call("Browser.close")
        except (OSError, ValueError) as exc:
            raise ReportError(f"Chromium could not print {html_path.name} to PDF: {exc}") from None
        finally:
            os.close(parent_w)  # Chromium stops when its pipe closes
            os.close(parent_r)
            _reap(pid)
    return base64.b64decode(data)


# Chromium's lock socket, $TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket: a Unix socket's path holds 107 bytes
_SOCKET_PATH_MAX, _SOCKET_IN_TMPDIR = 107, len("/org.chromium.Chromium.XXXXXX/SingletonSocket")


def _chromium_env(profile: Path) -> dict[str, str]:
    """Chromium's environment: its temporary files (its lock socket's folder) in the profile folder, which a kill
    leaves marked for the next command to remove (TMPDIR up to 31 bytes: /tmp, /var/tmp ...). Else in TMPDIR, as
    before; a TMPDIR of 62 bytes or more left the socket no room, and Chromium stopped at start ("Chromium stopped
    before it printed the report", after the warehouse commit): it then gets /tmp."""
    fitting = (str(p) for p in (profile, profile.parent) if len(os.fsencode(p)) + _SOCKET_IN_TMPDIR <= _SOCKET_PATH_MAX)
    return {**os.environ, "TMPDIR": next(fitting, "/tmp")}


def _reap(pid: int) -> None:
    """Wait for Chromium to exit (it does once its pipe is closed); stop it after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
