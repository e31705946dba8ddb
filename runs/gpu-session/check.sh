#!/bin/bash
# CUDA checks of the training path with the small preset: parity with the
# committed CPU run, stop + resume against an uninterrupted run, bf16+compile.
set -u
R=$PWD; OUT=${OUT:-/tmp/out}; mkdir -p $OUT; DEV=${DEV:-cuda}
exec > >(tee -a $OUT/cuda-checks.txt) 2>&1
export PYTHONUNBUFFERED=1 LLMBOOK_DATA=$R/.devrun/data OMP_NUM_THREADS=4
W=/tmp/llmbook2; rm -rf $W; git clone -q $R/.devrun/repo.bundle $W && cd $W
git log --oneline -1
[ -z "${NOPIP:-}" ] && python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
[ -n "${NOPIP:-}" ] && export PYTHONPATH=$W
L() { python3 -c "import sys; from llmbook.cli import main; sys.exit(main())" "$@"; }
T0=$(date +%s)
T="train --preset austen-tiny --device $DEV --quiet ${EXTRA:-}"
L $T --out /tmp/a; echo "a done $(( $(date +%s) - T0 ))s"
L $T --out /tmp/b --stop-after 200; L $T --out /tmp/b --resume; echo "b done $(( $(date +%s) - T0 ))s"
L $T --bf16 --compile --out /tmp/c; echo "c done $(( $(date +%s) - T0 ))s"
python3 - <<'PY'
import json, torch
from llmbook.train import read_jsonl
ld = lambda p: {r['step']: r for r in read_jsonl(p + '/metrics.jsonl')}
ref, a, b, c = (ld(p) for p in ('runs/austen-tiny', '/tmp/a', '/tmp/b', '/tmp/c'))
def diff(x, y, k, steps):
    return max(abs(x[s][k] - y[s][k]) for s in steps if s in x and s in y and x[s].get(k) is not None)
tr = range(1, 501); ev = [s for s in ref if ref[s]['val_loss'] is not None]
print('gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none', 'torch', torch.__version__)
for n, s in (('steps 1-10', range(1, 11)), ('steps 1-100', range(1, 101)), ('steps 1-500', tr)):
    print(f'cuda fp32 vs committed CPU run, train loss, {n}: max |d| = {diff(a, ref, "loss", s):.3g}')
print(f'cuda fp32 vs committed CPU run, val loss at evals: max |d| = {diff(a, ref, "val_loss", ev):.3g}')
print(f'cuda stop at 200 + resume vs uninterrupted cuda, train loss 1-500: max |d| = {diff(b, a, "loss", tr):.3g}')
print(f'cuda bf16+compile vs cuda fp32, final val loss: {c[500]["val_loss"]:.4f} vs {a[500]["val_loss"]:.4f}')
print('final val loss: CPU', round(ref[500]['val_loss'], 4), 'cuda', round(a[500]['val_loss'], 4))
print('tokens/s at step 500: fp32', a[500]['tokens_per_s'], 'bf16+compile', c[500]['tokens_per_s'])
PY
echo "== done $(( $(date +%s) - T0 ))s"
