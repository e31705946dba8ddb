"""Driving `llmbook` from a test: in this process (`cli`), or a real process."""
import contextlib, hashlib, io, signal, time, warnings
from pathlib import Path


def cli(*argv):
    "Run `llmbook ARGV` in this process: (exit code, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
         warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            from llmbook.cli import main
            main([str(a) for a in argv]); code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) or e.code is None else 1
            if isinstance(e.code, str): err.write(e.code + '\n')
    return code or 0, out.getvalue(), err.getvalue()


def snap(*dirs) -> dict:
    "Every file and folder under `dirs`: its bytes' SHA-256, or 'dir'."
    return {str(p): 'dir' if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for d in dirs if Path(d).exists() for p in sorted([Path(d), *Path(d).rglob('*')])}


def one_line(code, err, want_code, *needles):
    assert code == want_code, (code, err)
    assert 'Traceback' not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for n in needles: assert n in err, (n, err)


def sigint_once_logged(p, metrics:Path, lines:int, timeout:float=60,
                       sig=signal.SIGINT) -> str:
    "Wait until `metrics` has more than `lines` lines, then Ctrl-C (or `sig`) `p`: its stderr."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if metrics.exists() and len(metrics.read_text().splitlines()) > lines: break
        time.sleep(0.2)
    p.send_signal(sig)
    return p.communicate(timeout=timeout)[1]
