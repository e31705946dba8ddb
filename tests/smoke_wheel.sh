#!/usr/bin/env bash
# `pip install llmbook` as a user gets it: build the sdist, the wheel from it, install it in a fresh venv
# (torch's CPU build first, no extras), and run the console script from a folder
# outside the repository. Usage: tests/smoke_wheel.sh [WORKDIR]  (default: a temp dir)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
pipq=(--quiet --disable-pip-version-check)

echo "== sdist, then the wheel built from the sdist alone (as pip builds it from PyPI)"
rm -rf "$work/sdist" "$work/dist"
python3 -m build --sdist --no-isolation -o "$work/sdist" "$repo" > "$work/sdist.log" 2>&1 \
  || { tail -20 "$work/sdist.log"; echo "FAIL: the sdist does not build"; exit 1; }
sdist=$(ls "$work"/sdist/llmbook-*.tar.gz)
tar tzf "$sdist" > "$work/sdist.txt"  # listed first: grep -q in a pipe would SIGPIPE tar under pipefail
grep -q '/settings.ini$' "$work/sdist.txt" || { echo "FAIL: the sdist has no settings.ini"; exit 1; }
python3 -m pip wheel "${pipq[@]}" --no-deps --no-build-isolation -w "$work/dist" "$sdist"
wheel=$(ls "$work"/dist/llmbook-*.whl)

echo "== fresh venv: torch (CPU build), then the wheel without extras"
rm -rf "$work/venv"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install "${pipq[@]}" torch==2.13.0 \
  --index-url https://download.pytorch.org/whl/cpu
"$py" -m pip install "${pipq[@]}" "$wheel"
llmbook="$work/venv/bin/llmbook"

run="$work/run"; mkdir -p "$run"; cd "$run"   # not the repository: no source on the path
fail() { echo "FAIL: $*"; exit 1; }

echo "== llmbook --help, llmbook env"
"$llmbook" --help > help.txt || fail "llmbook --help"
grep -q export-hf help.txt || fail "--help lists no export-hf"
"$llmbook" env || fail "llmbook env"

echo "== export-hf and bench without the hf extra: one line naming llmbook[hf]"
needs_hf() {  # the command must fail in one line that names the extra, writing nothing
  local code
  set +e; "$llmbook" "$@" 2> err.txt; code=$?; set -e
  cat err.txt
  [ "$code" -ne 0 ] || fail "$1 without transformers exited 0"
  if grep -q Traceback err.txt; then fail "$1 printed a traceback"; fi
  [ "$(wc -l < err.txt)" -eq 1 ] || fail "$1 printed more than one line"
  grep -q 'llmbook\[hf\]' err.txt || fail "$1 does not name llmbook[hf]"
  [ ! -e out ] || fail "$1 created its --out"
}
needs_hf export-hf --ckpt nowhere --out out
needs_hf bench --size toy --out out

echo "== a tiny training run (2 steps, on the repository's own text) and generate"
"$llmbook" train --preset austen-tiny --out tiny --text "$repo/README.md" "$repo/LICENSE" \
  --threads 1 --quiet --stop-after 2 --device cpu \
  --set n_layer=1 d_model=32 n_head=2 context_len=16 bs=4 vocab_size=300 warmup=2 \
        eval_every=2 eval_batches=1 ckpt_every=2 'sample_steps=[]' \
  || fail "llmbook train"
"$llmbook" generate --ckpt tiny --max-new-tokens 5 --prompt "The book" \
  || fail "llmbook generate"

echo "== generate --int8: the wheel's llmbook/csrc/decode.cpp builds (ninja, -O3 -march=native)"
"$llmbook" generate --ckpt tiny --max-new-tokens 5 --prompt "The book" --int8 2> gen.txt \
  || { cat gen.txt; fail "llmbook generate --int8"; }
if grep -q 'no C++ decoder' gen.txt; then cat gen.txt; fail "the C++ decoder did not build"; fi
echo "smoke test of the wheel passed"
