"""Signals that arrive before the event loop handles them (start-up).

Installed first thing by lightningd/__main__.py: a ^C or SIGTERM during
start-up is only noted here, and LightningD.run shuts down in order once its
event loop has taken over (no traceback half-way through an import, no
subdaemon left behind)."""
import signal

RECEIVED: list[int] = []


def _note(signum: int, _frame: object) -> None:
    RECEIVED.append(signum)


def install() -> None:
    signal.signal(signal.SIGINT, _note)
    signal.signal(signal.SIGTERM, _note)
