"""`llmbook sweep` (issue #18): the CLI writes its log and refuses to overwrite it, and the
committed sweep in runs/scaling reproduces its first steps."""
import json
from pathlib import Path
import pytest

import llmbook.scaling as ls
from procs import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def text(tmp_path_factory):
    from llmbook.data import load_austen
    p = tmp_path_factory.mktemp('sweep')/'persuasion.txt'
    p.write_text(load_austen(105)['Persuasion'][:40_000])
    return p


def test_sweep_writes_the_log_and_refuses_to_overwrite_it(text, tmp_path):
    out = tmp_path/'sw'
    code, stdout, err = cli('sweep', '--toy', '--threads', 1, '--text', text, '--out', out)
    assert code == 0, err
    meta, recs = ls.read_sweep(out)
    assert meta['command'].startswith('llmbook sweep --toy')
    assert meta['git_commit'] and meta['git_dirty'] in (True, False)
    assert meta['hardware']['torch threads'] == 1 and meta['cpu_s'] > 0
    assert [r['axis'] for r in recs] == [r['axis'] for r in ls.plan(toy=True)]
    for r in recs:
        assert r['params_nonemb'] < r['params'] and r['tokens_seen'] == r['steps_done'] * 16 * 64
        assert r['epochs'] == pytest.approx(r['tokens_seen'] / r['unique_tokens'])
        assert r['flops'] == 6 * r['params_nonemb'] * r['tokens_seen'] and r['cpu_s'] > 0
        assert 0 < r['val_bpb'] and r['n_scored'] > 0 and r['curve']
    assert f'{len(recs)} runs in' in stdout
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = cli('sweep', '--toy', '--text', text, '--out', out)
    assert code == 1 and 'already holds a sweep' in err and '--force' in err
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, err = cli('sweep', '--toy', '--axes', 'repeat', '--threads', 1, '--text', text,
                       '--out', out, '--force')
    assert code == 0, err
    assert [r['axis'] for r in ls.read_sweep(out)[1]] == ['repeat']


def test_resume_keeps_finished_runs(text, tmp_path):
    "An interrupted sweep (a log without run.json) continues with --resume, in plan order."
    out = tmp_path/'sw'
    assert cli('sweep', '--toy', '--axes', 'grid', '--threads', 1, '--text', text, '--out', out)[0] == 0
    first = ls.read_sweep(out)[1]
    (out/'run.json').unlink()
    (out/'sweep.jsonl').write_text(''.join(l + '\n' for l in (out/'sweep.jsonl').read_text().splitlines()[:2]))
    code, stdout, err = cli('sweep', '--toy', '--threads', 1, '--text', text, '--out', out, '--resume')
    assert code == 0, err
    meta, recs = ls.read_sweep(out)
    assert meta['kept_from_earlier'] == 2 and stdout.count('bits/byte') == len(ls.plan(toy=True)) - 2
    assert [(r['axis'], r['size'], r['steps']) for r in recs] == \
        [(r['axis'], r['size'], r['steps']) for r in ls.plan(toy=True)]
    assert recs[:2] == first[:2]  # kept as they were
    for a, b in zip(recs[2:4], first[2:4]):  # re-run, same numbers
        assert a['val_loss'] == pytest.approx(b['val_loss'], rel=1e-5)
    code, _, err = cli('sweep', '--toy', '--text', text, '--out', out, '--resume')
    assert code == 1 and 'already holds a sweep' in err
    code, _, err = cli('sweep', '--toy', '--out', tmp_path/'none', '--resume')
    assert code == 1 and 'no interrupted sweep' in err


def _first_steps_match(runs):
    "Re-train the first steps of each committed run in `runs`; match its logged curve."
    import torch
    from llmbook.core import set_threads
    from llmbook.data import load_austen, train_val_split
    from llmbook.tokenizer import BPETokenizer
    base = ls.BASE
    texts = load_austen()
    tok = BPETokenizer.train(train_val_split(texts, base.val_frac)[0], base.vocab_size)
    old = torch.get_num_threads()
    set_threads(1)
    try:
        for r in runs:
            spec = {k: r[k] for k in ('axis', 'size', 'steps', 'frac', 'dropout',
                                      'weight_decay', 'patience', 'seed') if k in r}
            ref = r['curve'][:3]  # step 0 and the first two evaluations
            t = ls.make_trainer(spec, texts, tok, base, stop_after=ref[-1][0]).fit()
            assert len(t.train_ids) == r['unique_tokens']
            got = [[h['step'], h['loss'], h['val_loss']] for h in t.history
                   if h['val_loss'] is not None]
            assert [g[0] for g in got] == [c[0] for c in ref]
            for g, c in zip(got, ref):
                for a, b in zip(g[1:], c[1:]):
                    if b is not None: assert a == pytest.approx(b, rel=1e-4, abs=1e-4), (r['size'], g, c)
    finally:
        set_threads(old)


def _check_meta(meta):
    assert meta['git_commit'] and isinstance(meta['git_dirty'], bool)
    assert meta['hardware']['torch threads'] == 1


def test_committed_sweep_reproduces_its_first_steps():
    "Re-train the first steps of two committed runs (a grid run, a 1/8 run); match the log."
    meta, recs = ls.read_sweep(ROOT/'runs'/'scaling')
    _check_meta(meta)
    assert meta['command'].startswith('llmbook sweep')
    _first_steps_match([recs[0], next(r for r in recs if r['axis'] == 'size')])


def test_seed_and_isoflop_logs_reproduce_their_first_steps():
    "The seed replicates and the isoFLOP runs (issue #23): their plans are today's, from a clean"
    "commit, and the first steps of a seeded run and of an isoFLOP run match their logs."
    m_s, seeds = ls.read_sweep(ROOT/'runs'/'scaling'/'seeds')
    m_i, iso = ls.read_sweep(ROOT/'runs'/'scaling'/'isoflop')
    for m in (m_s, m_i):
        _check_meta(m)
        assert m['git_dirty'] is False and 'sweep_to(' in m['command']
    assert m_s['plan'] == json.loads(json.dumps(ls.noise_plan()))
    assert m_i['plan'] == json.loads(json.dumps(ls.isoflop_plan(3e11)))
    assert [r['seed'] for r in seeds] == [r['seed'] for r in ls.noise_plan()]
    assert all(r['flops'] == pytest.approx(3e11, rel=0.01) for r in iso)
    _first_steps_match([seeds[0], iso[2]])
