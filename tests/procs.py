"""Driving a real `llmbook` process from a test."""
import signal, time
from pathlib import Path


def sigint_once_logged(p, metrics:Path, lines:int, timeout:float=60,
                       sig=signal.SIGINT) -> str:
    "Wait until `metrics` has more than `lines` lines, then Ctrl-C (or `sig`) `p`: its stderr."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if metrics.exists() and len(metrics.read_text().splitlines()) > lines: break
        time.sleep(0.2)
    p.send_signal(sig)
    return p.communicate(timeout=timeout)[1]
