"""`llmbook speedrun`: one timed attempt per call, logged; the committed record repeats its first steps."""
import json, os, shlex, subprocess, sys
from pathlib import Path
import pytest

from llmbook.speedrun import read_records, record_table, GOAL
from llmbook.train import read_jsonl
from procs import cli, one_line, snap

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT/'runs'/'speedrun'
TINY = ['--set', 'n_layer=1', 'd_model=32', 'n_head=2', 'context_len=32', 'bs=8',
        'vocab_size=300', 'warmup=3', 'time_budget=1']


def test_speedrun_logs_an_attempt_and_refuses_to_repeat_its_name(tmp_path):
    code, out, err = cli('speedrun', 'a', '--change', 'tiny', '--log', tmp_path, '--threads', 1,
                         *TINY)
    assert code == 0, err
    [r] = read_records(tmp_path)
    assert out.startswith(f"a: {r['bpb']:.4f} bits per byte in {r['wall_s']:.1f} s")
    assert r['command'].startswith('llmbook train --preset austen-speedrun --out')
    assert json.loads((tmp_path/'a'/'run.json').read_text())['sessions'][0]['stopped'] \
        == 'time_budget'
    before = snap(tmp_path)
    code, _, err = cli('speedrun', 'a', '--change', 'again', '--log', tmp_path, *TINY)
    one_line(code, err, 1, 'already has an attempt', '--force')
    assert snap(tmp_path) == before
    code, _, err = cli('speedrun', 'a', '--change', 'again', '--log', tmp_path, '--threads', 1,
                       '--force', *TINY)
    assert code == 0, err
    assert [r['change'] for r in read_records(tmp_path)] == ['again']


@pytest.mark.parametrize('argv,says', [
    (['--set', 'bs=0'], 'setting bs=0'), (['--set', 'nope=1'], 'unknown config fields'),
    (['--preset', 'austen-huge'], 'valid presets'), (['--threads', '0'], '--threads')])
def test_bad_speedrun_input_is_one_line_and_writes_nothing(tmp_path, argv, says):
    code, _, err = cli('speedrun', 'x', '--change', 'bad', '--log', tmp_path/'log', *argv)
    one_line(code, err, 2 if argv[0] == '--threads' else 1, says)
    assert not (tmp_path/'log').exists()


def test_committed_record_repeats_its_first_steps(tmp_path):
    "Re-run the best committed attempt's command for 4 steps; match its logged losses."
    recs = read_records(LOG)
    best = min((r for r in recs if r['wall_s'] <= GOAL['seconds']), key=lambda r: r['bpb'])
    cmd = shlex.split(best['command'])
    i = cmd.index('--out'); del cmd[i:i + 2]
    r = subprocess.run([sys.executable, '-m', 'llmbook.cli', *cmd[1:], '--out', str(tmp_path/'re'),
                        '--stop-after', '4', '--threads', '1'], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ours = read_jsonl(tmp_path/'re'/'metrics.jsonl')
    ref = read_jsonl(LOG/best['name']/'metrics.jsonl')[:5]
    assert [x['step'] for x in ours] == [0, 1, 2, 3, 4]
    for a, b in zip(ours, ref):
        for k in ('loss', 'val_loss', 'lr'):
            if b[k] is not None: assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-4), (k, a, b)


def test_record_table_marks_only_improvements_within_the_clock():
    recs = [dict(name='a', change='x', bpb=2.0, wall_s=50, steps=1, git_commit='abcdef0', git_dirty=False),
            dict(name='b', change='y', bpb=1.9, wall_s=70, steps=1, git_commit='abcdef1', git_dirty=True),
            dict(name='c', change='z', bpb=1.95, wall_s=59, steps=1, git_commit='abcdef2', git_dirty=False),
            dict(name='d', change='w', bpb=1.99, wall_s=40, steps=1, git_commit='abcdef3', git_dirty=False)]
    t = record_table(recs)
    assert list(t['record']) == ['*', '', '*', '']
    assert list(t['commit']) == ['abcdef0', 'abcdef1+', 'abcdef2', 'abcdef3']
