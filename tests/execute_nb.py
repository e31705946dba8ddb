"""Re-execute chapters in full (book) mode and store their outputs, as the book does.

    python tests/execute_nb.py nbs/05_dataset.ipynb [more notebooks...]

Runs every cell (but `#| eval: false` ones) in a fresh IPython shell from inside `nbs/` (so `../runs/...` paths
resolve), without IN_TEST, stops at the first error, writes the outputs into the
notebook and runs nbdev_clean on it. Outputs must be seeded and free of timings that
churn: diff the notebook afterwards and read what changed.

On a CPU with AVX-512, PyTorch's default kernels round differently from the AVX2
ones the committed runs were made with: set ATEN_CPU_CAPABILITY=avx2 to retrain
runs/austen-tiny to its logged numbers, and to execute the chapters that fine-tune
it (06, 12, 13, 19, 20, 21) as they were stored.
"""
import os, re, subprocess, sys, time
from pathlib import Path


def execute(nb:Path):
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    nb = nb.resolve()
    os.environ.pop('IN_TEST', None)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    cwd = os.getcwd(); os.chdir(nb.parent)
    try:
        t0 = time.time()
        book = read_nb(nb)
        skip = lambda c: re.search(r'^#\|\s*eval:\s*false', c.source, re.M)   # never run here
        CaptureShell().run_all(book, exc_stop=True, preproc=skip)
        write_nb(book, nb)
        print(f"{nb.name}: executed in {time.time() - t0:.0f} s", file=sys.stderr)
    finally:
        os.chdir(cwd)
    subprocess.run(['nbdev_clean', '--fname', str(nb)], check=True)


if __name__ == '__main__':
    if len(sys.argv) < 2: sys.exit(__doc__)
    if len(sys.argv) == 2: execute(Path(sys.argv[1]))
    else:   # one process per notebook: no torch state leaks from one chapter to the next
        for p in sys.argv[1:]: subprocess.run([sys.executable, __file__, p], check=True)
