#!/bin/bash
# One device session: austen-15m for 5,000 steps (fp32) and, beside it, a
# 50,000-step attempt (bf16 + compile) stopped at a deadline; then samples.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$PWD; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
DEV=${DEV:-cuda}; S5=${S5:-}; S50=${S50:-50000}; D50=${D50:-450}; DEND=${DEND:-540}
FAST50=${FAST50:---bf16 --compile}; GTOK=${GTOK:-256}; NSEED=${NSEED:-8}
exec > >(tee -a $OUT/log.txt) 2>&1
export PYTHONUNBUFFERED=1 LLMBOOK_DATA=$R/.devrun/data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch, tiktoken, safetensors; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
W=/tmp/llmbook; rm -rf $W
if git clone -q $R/.devrun/repo.bundle $W; then cd $W; else W=$R; cd $R; echo "NO GIT: running in the copy"; fi
git log --oneline -1
[ -z "${NOPIP:-}" ] && { python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
  && echo "pip -e ok" || echo "pip -e failed"; }
if [ -n "${NOPIP:-}" ] || ! command -v llmbook >/dev/null; then
  mkdir -p /tmp/bin; printf '#!/bin/sh\nexec python3 -c "import sys; from llmbook.cli import main; sys.exit(main())" "$@"\n' > /tmp/bin/llmbook
  chmod +x /tmp/bin/llmbook; export PATH=/tmp/bin:$PATH PYTHONPATH=$W; echo "llmbook wrapper"
fi
git status --short | head
echo "== start runs at $(el)s"
OMP_NUM_THREADS=4 llmbook train --preset austen-15m ${S5:+--steps $S5} --device $DEV \
  --quiet ${EXTRA:-} --out runs/austen-15m > $OUT/run5k.txt 2>&1 &
P5=$!
OMP_NUM_THREADS=4 llmbook train --preset austen-15m --steps $S50 $FAST50 --device $DEV --quiet \
  --set ckpt_every=2500 eval_every=500 'sample_steps=[0,1000,2000,5000,10000,20000,30000,40000,50000]' \
  ${EXTRA:-} --out runs/austen-15m-50k > $OUT/run50k.txt 2>&1 &
P50=$!
last() { [ -f $1/metrics.jsonl ] && tail -1 $1/metrics.jsonl | cut -c1-150; }
alive() { kill -0 $1 2>/dev/null; }
G5=0
while alive $P5 || alive $P50; do
  sleep 15
  echo "[$(el)s] 5k: $(last runs/austen-15m)"; echo "[$(el)s] 50k: $(last runs/austen-15m-50k)"
  if [ $G5 = 0 ] && ! alive $P5; then
    wait $P5; E5=$?; echo "== 5k run exit $E5 at $(el)s"; G5=1; tail -3 $OUT/run5k.txt
    if [ $E5 != 0 ] && [ $(el) -lt 150 ]; then echo "== FAIL FAST"; cat $OUT/run5k.txt | tail -30; tail -30 $OUT/run50k.txt; kill $P50; exit 4; fi
    python3 $R/.devrun/gen.py $OUT/gen5k.jsonl $DEV $NSEED $GTOK runs/austen-15m/best runs/austen-15m/last
    echo "== 5k samples done at $(el)s"
  fi
  S=$(tail -1 runs/austen-15m/metrics.jsonl 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])' 2>/dev/null || echo 0)
  if alive $P5 && alive $P50 && [ $(el) -ge 200 ] && [ $(( $(el) * ${S5:-5000} / (S + 1) )) -gt $((DEND - 60)) ]; then
    echo "== 5k run at step $S by $(el)s would not finish: SIGINT the 50k run"; kill -INT $P50
  fi
  if alive $P50 && [ $(el) -ge $D50 ]; then
    echo "== deadline: SIGINT the 50k run at $(el)s"; kill -INT $P50
    for i in $(seq 40); do alive $P50 || break; sleep 1; done
  fi
  if [ $(el) -ge $DEND ]; then echo "== overall deadline at $(el)s"; kill -INT $P5 $P50 2>/dev/null; sleep 20; break; fi
done
wait $P50 2>/dev/null; echo "== 50k run exit $? at $(el)s"; tail -3 $OUT/run50k.txt
if [ $G5 = 0 ]; then wait $P5; echo "== 5k exit $?"; tail -5 $OUT/run5k.txt; fi
if [ $(el) -lt $((DEND + 30)) ]; then
  python3 $R/.devrun/gen.py $OUT/gen50k.jsonl $DEV 4 $GTOK runs/austen-15m-50k/last
fi
for r in austen-15m austen-15m-50k; do
  [ -d runs/$r ] && tar czf $OUT/$r.tgz --exclude=last --exclude=best --exclude='*.bin' --exclude='.*' -C runs $r
done
ls -la $OUT; echo "== done at $(el)s"
