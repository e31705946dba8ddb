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
                'decode tokens/s, cache', 'decode, share of floor, cache', 'decode tokens/s, C++',
                'decode, share of floor, C++', 'decode tokens/s, C++ int8', 'decode tokens/s, no cache',
                'BPE train s', 'encode MB/s, encode()', 'encode MB/s, to_tiktoken()'):
        line = next(l for l in rep.splitlines() if l.startswith(row))
        assert line.rstrip().endswith('x'), line
    for key in ('git commit:', 'load average (1, 5, 15 min) at start, end:', 'peak matmul, GFLOP/s:', 'floor:', 'one-thread C++ vector sum',
                'C++ decoder, 1 thread: int8 reads', 'torch:', 'transformers:', 'cpu count:'):
        assert key in rep
    assert 'ids of encode() == to_tiktoken(): True' in rep


def test_bench_unknown_size_is_refused():
    r = subprocess.run(['llmbook', 'bench', '--size', 'huge'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "invalid choice: 'huge'" in r.stderr


def test_bench_without_a_compiler_leaves_out_the_cpp_rows(tmp_path):
    env = os.environ | {'LLMBOOK_NO_CPP': '1'}
    r = subprocess.run(['llmbook', 'bench', '--size', 'toy', '--threads', '1', '--device', 'cpu'],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    assert 'llmbook: no C++ decoder (LLMBOOK_NO_CPP is set); decoding with PyTorch' in r.stderr
    assert 'decode tokens/s, C++' not in r.stdout and 'decode, share of floor, cache' in r.stdout
    assert 'one-thread numpy dot' in r.stdout and 'C++ decoder: not built here' in r.stdout
