"""`llmbook bench`: the table has every race with its peer and a ratio (toy size; no timing asserts)."""
import os, subprocess
from pathlib import Path
import pytest

pytest.importorskip('transformers')
ROOT = Path(__file__).resolve().parents[1]


def test_bench_toy_prints_and_saves_the_table(tmp_path):
    out = tmp_path/'bench.txt'
    r = subprocess.run(['llmbook', 'bench', '--size', 'toy', '--threads', '1', '--device', 'cpu',
                        '--out', str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rep = out.read_text()
    assert rep == r.stdout
    assert rep.startswith('command: llmbook bench --size toy --threads 1 --device cpu --out')
    for row in ('train tokens/s, fp32', 'train MFU, fp32', 'train tokens/s, bf16', 'train MFU, bf16',
                'decode tokens/s, cache', 'decode, share of read bound', 'decode tokens/s, no cache',
                'BPE train s', 'encode MB/s, encode()', 'encode MB/s, to_tiktoken()'):
        line = next(l for l in rep.splitlines() if l.startswith(row))
        assert line.rstrip().endswith('x'), line
    for key in ('git commit:', 'peak matmul, GFLOP/s:', 'read bound:', 'torch:', 'transformers:', 'cpu count:'):
        assert key in rep
    assert 'ids of encode() == to_tiktoken(): True' in rep


def test_bench_unknown_size_is_refused():
    r = subprocess.run(['llmbook', 'bench', '--size', 'huge'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "invalid choice: 'huge'" in r.stderr
