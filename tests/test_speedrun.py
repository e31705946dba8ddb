"""`llmbook speedrun`: sets of seeded runs on two tracks, logged under a lock; committed records repeat their first steps."""
import json, os, shlex, signal, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest

from llmbook.speedrun import (read_records, record_sets, record_table, busy_reason, welch,
                              GOAL, SEEDS, FLOPS, speedrun)
from llmbook.train import read_jsonl
from procs import cli, one_line, snap

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT/'runs'/'speedrun'
TINY = ['--set', 'n_layer=1', 'd_model=32', 'n_head=2', 'context_len=32', 'bs=8',
        'vocab_size=300', 'warmup=3', 'time_budget=1']


def test_speedrun_logs_a_set_and_refuses_to_repeat_a_seed(tmp_path):
    code, out, err = cli('speedrun', 'a', '--change', 'tiny', '--log', tmp_path, '--threads', 1,
                         '--seeds', 2, *TINY)
    assert code == 0, err
    r1, r2 = read_records(tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith('this machine: ') and 'GFLOP/s' in lines[0]
    assert lines[1].startswith(f"a seed 1: {r1['bpb']:.4f} bits per byte in {r1['wall_s']:.1f} s")
    assert lines[3].startswith('a: ') and 'mean ± sd' in lines[3] and 'not a record' in lines[3]
    assert [r1['seed'], r2['seed']] == [1, 2] and r1['track'] == 'clock'
    assert r1['command'].startswith('llmbook train --preset austen-speedrun --out')
    assert r1['calibration']['threads'] == 1 and r1['cores'] == os.cpu_count()
    assert json.loads((tmp_path/'a'/'seed-1'/'run.json').read_text())['sessions'][0]['stopped'] \
        == 'time_budget'
    before = snap(tmp_path)
    code, _, err = cli('speedrun', 'a', '--change', 'again', '--log', tmp_path, '--seeds', 1,
                       '--first-seed', 2, '--no-calibrate', *TINY)
    one_line(code, err, 1, 'already has attempt', 'seed 2', '--force')
    assert snap(tmp_path) == before
    code, _, err = cli('speedrun', 'a', '--change', 'again', '--log', tmp_path, '--threads', 1,
                       '--seeds', 1, '--first-seed', 2, '--force', '--no-calibrate', *TINY)
    assert code == 0, err
    assert [(r['seed'], r['change']) for r in read_records(tmp_path)] == [(1, 'tiny'), (2, 'again')]


def test_portable_track_spends_its_flops_in_steps(tmp_path):
    code, out, err = cli('speedrun', 'f', '--change', 'tiny', '--log', tmp_path, '--threads', 1,
                         '--seeds', 1, '--flops', '2e9', '--no-calibrate', *TINY)
    assert code == 0, err
    [r] = read_records(tmp_path)
    assert (r['track'], r['flops_budget'], r['steps']) == ('flops', 2e9, r['flop_steps'])
    assert r['flops'] <= 2e9 and r['command'].endswith(f"time_budget=0 steps={r['steps']}")
    run = json.loads((tmp_path/'f'/'seed-1'/'run.json').read_text())
    assert run['sessions'][0]['stopped'] != 'time_budget' and run['steps'] == r['steps']


@pytest.mark.parametrize('argv,says,code', [
    (['--set', 'bs=0'], 'setting bs=0', 1), (['--set', 'nope=1'], 'unknown config fields', 1),
    (['--preset', 'austen-huge'], 'valid presets', 1), (['--threads', '0'], '--threads', 2),
    (['--seeds', '0'], '--seeds', 2), (['--flops', '-1'], '--flops', 2),
    (['--flops', '1e6'], 'raise --flops', 1), (['--code', '/nonexistent'], 'not an llmbook', 1)])
def test_bad_speedrun_input_is_one_line_and_writes_nothing(tmp_path, argv, says, code):
    c, _, err = cli('speedrun', 'x', '--change', 'bad', '--log', tmp_path/'log', *argv)
    one_line(c, err, code, says)
    assert not (tmp_path/'log').exists()


@pytest.mark.parametrize('name', ['../victim', 'a/b', '.hidden', ''])
def test_an_attempt_name_cannot_leave_the_log(tmp_path, name):
    (tmp_path/'victim').mkdir(); (tmp_path/'victim'/'run.json').write_text('{}')
    before = snap(tmp_path)
    code, _, err = cli('speedrun', name, '--change', 'x', '--log', tmp_path/'log', *TINY)
    one_line(code, err, 1, 'one folder name')
    assert snap(tmp_path) == before


def test_a_folder_that_is_not_a_run_of_the_log_is_never_replaced(tmp_path):
    mine = tmp_path/'log'/'a'/'seed-1'
    mine.mkdir(parents=True); (mine/'notes.txt').write_text('mine')
    before = snap(tmp_path)
    for force in ([], ['--force']):
        code, _, err = cli('speedrun', 'a', '--change', 'x', '--log', tmp_path/'log', '--seeds', 1,
                           '--no-calibrate', *force, *TINY)
        one_line(code, err, 1, 'is not a run of this log')
        assert snap(tmp_path) == before


def test_two_speedruns_into_one_log_keep_both(tmp_path):
    sets = TINY[1:]
    with ThreadPoolExecutor(2) as ex:
        futs = [ex.submit(speedrun, n, 'x', tmp_path, sets=sets, threads=1) for n in 'ab']
        recs = [f.result() for f in futs]
    assert sorted(r['name'] for r in read_records(tmp_path)) == ['a', 'b']
    assert {r['name']: r for r in read_records(tmp_path)} == {r['name']: r for r in recs}


def test_a_failed_run_is_one_line(tmp_path):
    code, _, err = cli('speedrun', 'x', '--change', 'x', '--log', tmp_path, '--seeds', 1,
                       '--no-calibrate', *TINY, 'max_lr=1e9', 'grad_clip=0', 'warmup=1')
    one_line(code, err, 1, "attempt 'x' seed 1 failed")
    assert not (tmp_path/'records.jsonl').exists() and not (tmp_path/'x'/'seed-1').exists()


def test_sigterm_to_speedrun_stops_its_training_process(tmp_path):
    p = subprocess.Popen([sys.executable, '-m', 'llmbook.cli', 'speedrun', 'x', '--change', 'x',
                          '--log', str(tmp_path), '--seeds', '1', '--no-calibrate', '--threads', '1',
                          *TINY[:-1], 'time_budget=60'], stderr=subprocess.PIPE, text=True)
    metrics = tmp_path/'x'/'seed-1'/'metrics.jsonl'
    t0 = time.time()
    while not (metrics.exists() and metrics.read_text().count('\n') > 2):
        assert time.time() - t0 < 60 and p.poll() is None
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    assert p.returncode != 0
    n = metrics.read_text().count('\n'); time.sleep(1.5)
    assert metrics.read_text().count('\n') == n  # nothing is still training
    assert not (tmp_path/'records.jsonl').exists()


def _record(track):
    "The record of a committed track: the last attempt marked * in its table."
    t = record_sets(read_records(LOG), track)
    return t[t['record'] == '*'].index[-1]


@pytest.mark.parametrize('track', ['flops', 'clock'])
def test_committed_records_repeat_their_first_steps(tmp_path, track):
    "Re-run each track's record's seed-1 command for 4 steps; match its logged losses."
    name = _record(track)
    [run] = [r for r in read_records(LOG) if r['name'] == name and r['seed'] == 1]
    cmd = shlex.split(run['command'])
    i = cmd.index('--out'); rel = Path(cmd[i + 1]); del cmd[i:i + 2]
    r = subprocess.run([sys.executable, '-m', 'llmbook.cli', *cmd[1:], '--out', str(tmp_path/'re'),
                        '--stop-after', '4', '--threads', '1'], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ours = read_jsonl(tmp_path/'re'/'metrics.jsonl')
    ref = read_jsonl(LOG/name/'seed-1'/'metrics.jsonl')[:5]
    assert [x['step'] for x in ours] == [0, 1, 2, 3, 4]
    for a, b in zip(ours, ref):
        for k in ('loss', 'val_loss', 'lr'):
            if b[k] is not None: assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-4), (k, a, b)


def test_committed_sets_follow_the_rules():
    recs = read_records(LOG)
    for track in ('flops', 'clock'):
        t = record_sets(recs, track)
        for name, row in t[t['record'] == '*'].iterrows():
            assert row['n'] >= SEEDS, name
        assert (t['record'] == '*').any()
    for r in recs:
        assert not r['git_dirty'] and r['seed'] >= 1
        if r['track'] == 'clock':  # the machine and its load, for every run
            assert {'cpu', 'load_1m', 'busy_cores', 'others_cores', 'calibration'} <= set(r)


def _runs(name, bpbs, track='clock', cpu='X', **kw):
    return [dict(name=name, seed=s, change=name, track=track, cpu=cpu, bpb=b, wall_s=50,
                 steps=1, load_1m=0.1, cores=2, busy_cores=0.0, others_cores=0.0) | kw
            for s, b in enumerate(bpbs, 1)]


def test_record_sets_need_five_counted_runs_and_a_significant_test():
    base = _runs('a', [1.70, 1.71, 1.69, 1.70, 1.705])
    close = _runs('b', [1.695, 1.705, 1.69, 1.70, 1.70])  # within noise: not a record
    better = _runs('c', [1.68, 1.685, 1.675, 1.68, 1.69])
    four = _runs('d', [1.60, 1.61, 1.60, 1.61])  # too few runs
    busy = _runs('e', [1.60] * 5, others_cores=0.8)  # never counted
    late = _runs('f', [1.50] * 5, wall_s=61)  # over the clock
    other = _runs('g', [1.90, 1.91, 1.92, 1.90, 1.91], cpu='Y')  # its own machine's first
    t = record_sets(base + close + better + four + busy + late + other)
    assert list(t['record']) == ['*', '', '*', '', '', '', '*']
    assert list(t['n']) == [5, 5, 5, 4, 0, 0, 5]
    assert t.loc['c', 'p'] == pytest.approx(welch([r['bpb'] for r in base],
                                                  [r['bpb'] for r in better])['p'])
    assert t.loc['c', 'p'] < 0.01 < t.loc['b', 'p']


def test_busy_reason_flags_each_kind_of_load():
    q = dict(load_1m=0.2, cores=2, busy_cores=0.1, others_cores=0.1)
    assert busy_reason(q) is None
    assert 'load 3.0' in busy_reason(q | dict(load_1m=3.0))
    assert 'just before' in busy_reason(q | dict(busy_cores=1.0))
    assert 'during it' in busy_reason(q | dict(others_cores=0.3))


def test_history_table_marks_only_improvements_within_the_clock():
    recs = [dict(name='a', change='x', bpb=2.0, wall_s=50, steps=1, git_commit='abcdef0', git_dirty=False),
            dict(name='b', change='y', bpb=1.9, wall_s=70, steps=1, git_commit='abcdef1', git_dirty=True),
            dict(name='c', change='z', bpb=1.95, wall_s=59, steps=1, git_commit='abcdef2', git_dirty=False),
            dict(name='d', change='w', bpb=1.99, wall_s=40, steps=1, git_commit='abcdef3', git_dirty=False)]
    t = record_table(recs)
    assert list(t['best']) == ['*', '', '*', '']
    assert list(t['commit']) == ['abcdef0', 'abcdef1+', 'abcdef2', 'abcdef3']
