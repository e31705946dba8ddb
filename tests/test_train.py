"""`llmbook train` / `llmbook generate`: resume, interruption, bad input, and the committed run."""
import contextlib, hashlib, io, json, math, shlex, os, subprocess, sys, warnings
from pathlib import Path
from procs import sigint_once_logged
import pytest, torch

import llmbook.train as lt
import llmbook.checkpoint as lck
import llmbook.optim as lopt
from llmbook.cli import main

ROOT = Path(__file__).resolve().parents[1]
# a model small enough to train in a second or two on one CPU thread
TINY = ['--set', 'n_layer=1', 'd_model=32', 'n_head=2', 'context_len=16', 'bs=4',
        'vocab_size=300', 'warmup=2', 'eval_every=4', 'eval_batches=2', 'ckpt_every=3',
        'sample_steps=[0,6]', 'sample_tokens=8']


@pytest.fixture(scope='module')
def text(tmp_path_factory):
    from llmbook.data import load_austen
    p = tmp_path_factory.mktemp('text')/'persuasion.txt'
    p.write_text(load_austen(105)['Persuasion'][:30_000])
    return p


def cli(*argv):
    "Run `llmbook ARGV` in this process: (exit code, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
         warnings.catch_warnings():
        warnings.simplefilter('ignore')  # e.g. "no Gutenberg marker" in our excerpt
        try: main([str(a) for a in argv]); code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) or e.code is None else 1
            if isinstance(e.code, str): err.write(e.code)
    return code or 0, out.getvalue(), err.getvalue()


def train(out, text, *extra):
    return cli('train', '--preset', 'austen-tiny', '--out', out, '--text', text, '--quiet',
               '--steps', 10, *TINY, *extra)


def log(run, key='loss'):
    return [(r['step'], r[key]) for r in lt.read_jsonl(Path(run)/'metrics.jsonl')]


def snapshot(d):
    "Every file under `d` with its hash: to prove nothing on disk changed."
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(d).rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def full(tmp_path_factory, text):
    "An uninterrupted 10-step run to compare against."
    out = tmp_path_factory.mktemp('runs')/'full'
    code, _, err = train(out, text)
    assert code == 0, err
    return out


def test_run_folder_has_log_plot_samples_and_record(full):
    recs = lt.read_jsonl(full/'metrics.jsonl')
    assert [r['step'] for r in recs] == list(range(11))
    for k in ('step', 'loss', 'val_loss', 'lr', 'grad_norm', 'tokens_per_s', 'mfu', 'val_bpb'):
        assert k in recs[4], k
    assert recs[-1]['val_loss'] < recs[0]['val_loss']
    assert [s['step'] for s in lt.read_jsonl(full/'samples.jsonl')] == [0, 6]
    run = json.loads((full/'run.json').read_text())
    assert run['sessions'][0]['command'].startswith('llmbook train --preset austen-tiny')
    assert {'git_commit', 'hardware', 'duration_s', 'config'} <= set(run)
    assert (full/'loss.png').stat().st_size > 1000
    for ck in ('last', 'best'):   # no pickles: safetensors, JSON and the tokenizer text
        names = sorted(p.name for p in (full/ck).iterdir())
        assert names == ['meta.json', 'model.safetensors', 'state.safetensors', 'tokenizer.txt']
    assert json.loads((full/'last'/'meta.json').read_text())['step'] == 10


def test_stop_and_resume_repeats_the_losses_exactly(full, text, tmp_path):
    out = tmp_path/'run'
    code, _, err = train(out, text, '--stop-after', 4)
    assert code == 0, err
    assert json.loads((out/'last'/'meta.json').read_text())['step'] == 4
    code, _, err = train(out, text, '--resume')
    assert code == 0, err
    for key in ('loss', 'grad_norm', 'val_loss', 'lr'):
        assert log(out, key) == log(full, key), key   # exact, not close
    assert lt.read_jsonl(out/'samples.jsonl') == lt.read_jsonl(full/'samples.jsonl')


def test_ctrl_c_saves_and_resume_matches(text, tmp_path):
    "SIGINT a real `llmbook train` mid-run; it saves `last`; resuming repeats the losses."
    args = [str(a) for a in ['--preset', 'austen-tiny', '--text', text, '--quiet', '--steps', 5000, *TINY]]
    out = tmp_path/'int'
    p = subprocess.Popen(['llmbook', 'train', '--out', str(out), *args], stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    err = sigint_once_logged(p, out/'metrics.jsonl', 3)
    assert p.returncode == 130 and 'interrupted' in err and 'Traceback' not in err, err
    k = json.loads((out/'last'/'meta.json').read_text())['step']
    assert k >= 3 and [s for s, _ in log(out)] == list(range(k + 1))
    code, _, e2 = cli('train', '--out', out, '--resume', '--stop-after', 3, *args)
    assert code == 0, e2
    ref = tmp_path/'ref'
    code, _, e3 = cli('train', '--out', ref, '--stop-after', k + 3, *args)
    assert code == 0, e3
    assert log(out) == log(ref) and len(log(ref)) == k + 4


def test_generate_is_seeded_and_continues_the_prompt(full):
    a = cli('generate', '--ckpt', full, '--prompt', 'It was', '--max-new-tokens', 12)
    b = cli('generate', '--ckpt', full, '--prompt', 'It was', '--max-new-tokens', 12)
    assert a[0] == 0 and a == b and a[1].startswith('It was') and len(a[1]) > 10
    c = cli('generate', '--ckpt', full/'last', '--prompt', 'It was', '--seed', 1, '--top-p', 0.9)
    assert c[0] == 0 and c[1] != a[1]


def one_line_error(code, err, *words):
    assert code == 1 and err.strip().count('\n') == 0, err
    for w in words: assert w in err, (w, err)


def test_unknown_preset_lists_the_valid_ones():
    code, _, err = cli('train', '--preset', 'austen-huge')
    one_line_error(code, err, 'austen-huge', 'austen-tiny', 'austen-15m')


def test_existing_run_is_refused_unless_resume_or_force(full, text, tmp_path):
    before = snapshot(full)
    one_line_error(*train(full, text)[::2], 'already holds a run', '--resume', '--force')
    assert snapshot(full) == before
    one_line_error(*train(tmp_path/'empty', text, '--resume')[::2], 'nothing to resume')
    out = tmp_path/'f'
    assert train(out, text, '--stop-after', 2)[0] == 0
    assert train(out, text, '--force', '--stop-after', 1)[0] == 0
    assert len(log(out)) == 2   # steps 0 and 1: the old log is gone


def test_resume_with_other_config_tokenizer_or_text_is_refused(full, text, tmp_path):
    before = snapshot(full)
    one_line_error(*train(full, text, '--resume', '--set', 'n_layer=2')[::2], 'config differs', 'n_layer')
    other = tmp_path/'other.txt'
    other.write_text(text.read_text()[:20_000])
    code, _, err = cli('train', '--preset', 'austen-tiny', '--out', full, '--text', other,
                       '--quiet', '--resume', *TINY)
    one_line_error(code, err, 'training text differs')
    assert snapshot(full) == before
    run = tmp_path/'tokchange'
    assert train(run, text, '--stop-after', 2)[0] == 0
    (run/'tokenizer.txt').write_text((run/'tokenizer.txt').read_text().replace('merges', 'merges ', 1))
    one_line_error(*train(run, text, '--resume')[::2], 'tokenizer.txt differs')


def test_corrupt_checkpoint_is_refused_and_kept(text, tmp_path):
    out = tmp_path/'c'
    assert train(out, text, '--stop-after', 3)[0] == 0
    f = out/'last'/'model.safetensors'
    f.write_bytes(f.read_bytes()[:-100])
    before = snapshot(out)
    one_line_error(*train(out, text, '--resume')[::2], 'truncated or corrupt', 'model.safetensors')
    one_line_error(*cli('generate', '--ckpt', out/'last')[::2], 'truncated or corrupt')
    assert snapshot(out) == before
    (out/'best'/'meta.json').write_text('{"step": 1')
    before = snapshot(out)
    one_line_error(*cli('generate', '--ckpt', out)[::2], 'not valid JSON')
    assert snapshot(out) == before


def test_failed_save_leaves_the_previous_checkpoint(full, tmp_path, monkeypatch):
    import shutil
    ck = tmp_path/'last'
    shutil.copytree(full/'last', ck)
    before = snapshot(tmp_path)
    model, tok, cfg, st = lt.load_checkpoint(ck)
    def boom(*a, **k): raise OSError('disk full')
    monkeypatch.setattr(lck, 'save_file', boom)  # where save_checkpoint looks it up
    with pytest.raises(OSError):
        lt.save_checkpoint(ck, model, cfg, ck/'tokenizer.txt', 99)
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ['last']


def test_nan_loss_stops_before_the_update_and_keeps_last(text, tmp_path, monkeypatch):
    real, calls = lopt.next_token_loss, []
    def flaky(logits, y):
        loss = real(logits, y)
        if not torch.is_grad_enabled(): return loss   # evaluation
        calls.append(1)
        return loss * math.nan if len(calls) == 5 else loss   # the 5th step's loss
    monkeypatch.setattr(lopt, 'next_token_loss', flaky)  # what accumulate calls
    code, _, err = train(tmp_path/'n', text, '--set', 'eval_every=100')
    one_line_error(code, err, 'diverged at step 5', 'step 3', 'is kept')
    model, tok, cfg, st = lt.load_checkpoint(tmp_path/'n')
    assert st['step'] == 3 and all(torch.isfinite(p).all() for p in model.parameters())
    assert [r['step'] for r in lt.read_jsonl(tmp_path/'n'/'metrics.jsonl')] == [0, 1, 2, 3, 4]
    assert json.loads((tmp_path/'n'/'run.json').read_text())['sessions'][0]['stopped'] == 'diverged'


def rerun_committed(run, steps:int, tmp_path, threads:int=1):
    "Re-run the command recorded in `run` on CPU for `steps` steps: (our metrics, the log's)."
    cmd = shlex.split(json.loads((run/'run.json').read_text())['sessions'][0]['command'])
    assert cmd[:2] == ['llmbook', 'train']
    for opt in ('--out', '--device'):  # a scratch folder, not the committed run; CPU
        if opt in cmd: i = cmd.index(opt); del cmd[i:i + 2]
    r = subprocess.run([*cmd, '--out', str(tmp_path/'re'), '--device', 'cpu',
                        '--stop-after', str(steps), '--quiet'], capture_output=True, text=True,
                       cwd=tmp_path, env=os.environ | {'OMP_NUM_THREADS': str(threads)})
    assert r.returncode == 0, r.stderr
    ours = lt.read_jsonl(tmp_path/'re'/'metrics.jsonl')
    assert [r['step'] for r in ours] == list(range(steps + 1))
    return ours, lt.read_jsonl(run/'metrics.jsonl')[:steps + 1]


def test_committed_run_reproduces_its_first_steps(tmp_path):
    "Re-run the command recorded in runs/austen-tiny for 6 steps; match the logged losses."
    ours, ref = rerun_committed(ROOT/'runs'/'austen-tiny', 6, tmp_path)
    for a, b in zip(ours, ref):
        for k in ('loss', 'val_loss'):
            if b[k] is not None: assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-4), (k, a, b)


def test_gpu_run_reproduces_its_first_steps_on_cpu(tmp_path):
    "runs/austen-15m ran on CUDA: its tokenizer, data and first losses come back on CPU."
    run = ROOT/'runs'/'austen-15m'
    meta = json.loads((run/'run.json').read_text())
    assert meta['git_commit'] and meta['git_dirty'] is False and meta['steps'] == 5000
    assert meta['hardware']['device'] == 'cuda' and meta['hardware']['gpu']
    ours, ref = rerun_committed(run, 2, tmp_path, threads=2)
    assert (tmp_path/'re'/'tokenizer.txt').read_bytes() == (run/'tokenizer.txt').read_bytes()
    assert json.loads((tmp_path/'re'/'data.json').read_text()) == json.loads((run/'data.json').read_text())
    # evaluation has no dropout: same weights, same windows, same number (float32 on both)
    assert ours[0]['val_loss'] == pytest.approx(ref[0]['val_loss'], rel=1e-5)
    # training steps do use dropout, and its masks come from the device's generator (CUDA
    # there, CPU here), so the losses agree only to dropout's noise: 0.0024 at step 1 when
    # measured, against 0.023 that one step changes the loss by (a step off would fail)
    assert abs(ref[1]['loss'] - ref[2]['loss']) > 0.02
    for a, b in zip(ours[1:], ref[1:]): assert abs(a['loss'] - b['loss']) < 0.01, (a, b)


def test_ablate_writes_its_log_and_keeps_an_existing_one(tmp_path, text):
    out = tmp_path/'abl'
    args = ['ablate', '--steps', 3, '--seeds', 0, '--variants', 'llama', 'gpt2',
            '--text', text, '--out', out, '--threads', 1]
    code, stdout, err = cli(*args)
    assert code == 0, err
    meta, runs = lt.read_ablation(out)
    assert sorted(runs) == [('gpt2', 0), ('llama', 0)]
    assert meta['command'].startswith('llmbook ablate --steps 3') and meta['seeds'] == [0]
    assert meta['config']['steps'] == 3 and meta['duration_s'] > 0 and 'hardware' in meta
    assert [r['step'] for r in runs['llama', 0][1]] == [0, 1, 2, 3]
    assert runs['llama', 0][0] != runs['gpt2', 0][0]  # parameter counts differ
    before = snapshot(out)
    code, _, err = cli(*args)  # a second time: refused, nothing lost
    one_line_error(code, err, 'already holds an ablation', '--force')
    assert snapshot(out) == before
    code, _, err = cli(*args[:-4], '--variants', 'llama', 'tanh', '--out', tmp_path/'b')
    one_line_error(code, err, "'tanh'", 'valid:', 'llama + GELU MLP')
    assert not (tmp_path/'b').exists()


def test_committed_ablation_reproduces_its_first_steps():
    "Re-train two of runs/ablation's variants for 5 steps; match the logged losses."
    meta, runs = lt.read_ablation(ROOT/'runs'/'ablation')
    assert meta['git_commit'] and meta['git_dirty'] is False
    assert meta['command'].startswith('llmbook ablate')
    cfg = lck.config_from_dict(meta['config'])
    again = lt.ablate(cfg, seeds=(0,), names=['llama', 'gpt2'], stop_after=5)
    for k, (n, hist) in again.items():
        assert n == runs[k][0]
        ref = runs[k][1][:6]
        assert [r['step'] for r in hist] == [r['step'] for r in ref] == list(range(6))
        for a, b in zip(hist, ref):
            for key in ('loss', 'val_loss'):
                if b[key] is not None:
                    assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-4), (k, key, a, b)


# -- issue #15, the training side
def test_sigterm_saves_like_ctrl_c(text, tmp_path):
    "`timeout`, Docker and schedulers stop jobs with SIGTERM: save `last`, exit 143."
    import signal
    args = [str(a) for a in ['--preset', 'austen-tiny', '--text', text, '--quiet', '--steps', 5000,
                             *TINY, '--set', 'ckpt_every=50']]
    out = tmp_path/'term'
    p = subprocess.Popen(['llmbook', 'train', '--out', str(out), *args], stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    err = sigint_once_logged(p, out/'metrics.jsonl', 3, sig=signal.SIGTERM)
    assert p.returncode == 143 and 'SIGTERM' in err and 'Traceback' not in err, err
    assert len(err.strip().splitlines()) == 1, err
    k = json.loads((out/'last'/'meta.json').read_text())['step']
    assert k >= 3 and [s for s, _ in log(out)] == list(range(k + 1))
    run = json.loads((out/'run.json').read_text())
    assert run['sessions'][0]['stopped'] == 'interrupted' and run['steps'] == k


def test_stale_save_temps_are_removed_and_nothing_else(text, tmp_path):
    out = tmp_path/'t'
    assert train(out, text, '--stop-after', 2)[0] == 0
    junk = [out/'.last.ab12cd34', out/'.best.x_y9z0q1']   # what `kill -9` mid-save leaves
    for j in junk: j.mkdir(); (j/'model.safetensors').write_bytes(b'0' * 100)
    keep = [out/'.last.keep', out/'notes.ab12cd34']
    keep[0].mkdir(); keep[1].write_text('mine')
    assert train(out, text, '--resume', '--stop-after', 1)[0] == 0
    assert not any(j.exists() for j in junk) and all(k.exists() for k in keep)


def test_resume_may_change_learning_rate_and_cadence_and_records_it(text, tmp_path):
    out = tmp_path/'lr'
    assert train(out, text, '--stop-after', 4)[0] == 0
    code, _, err = train(out, text, '--resume', '--set', 'max_lr=1e-3', 'eval_every=2')
    assert code == 0, err
    ses = json.loads((out/'run.json').read_text())['sessions']
    assert ses[1]['changed'] == {'max_lr': [3e-3, 1e-3], 'eval_every': [4, 2]}
    assert json.loads((out/'last'/'meta.json').read_text())['config']['max_lr'] == 1e-3
    assert [s for s, v in log(out, 'val_loss') if v is not None] == [0, 4, 6, 8, 10]


@pytest.mark.parametrize('sets,says', [
    ([], '--resume --set max_lr=0.0015 ('),
    (['--set', 'min_lr=0.002'], '--resume --set max_lr=0.0015 min_lr=0.00015 (')],  # below it
    ids=['max_lr', 'and min_lr'])
def test_divergence_advice_is_what_works(text, tmp_path, monkeypatch, sets, says):
    real = lopt.next_token_loss
    monkeypatch.setattr(lopt, 'next_token_loss', lambda lg, y: real(lg, y) * (
        math.nan if torch.is_grad_enabled() and y.sum() > -1 and
        flaky_step[0] else 1))
    flaky_step = [False]
    out = tmp_path/'d'
    assert train(out, text, '--stop-after', 3, *sets)[0] == 0
    flaky_step[0] = True
    code, _, err = train(out, text, '--resume', *sets)
    one_line_error(code, err, 'diverged at step 4', says)
    flaky_step[0] = False
    advice = err.split('again with ')[1].split(' (')[0].split()   # --resume --set max_lr=X
    code, out_, err = train(out, text, *advice)
    assert code == 0 and 'step 10/10' in out_, err


def test_resume_without_last_says_it_uses_best(text, tmp_path):
    import shutil
    out = tmp_path/'nl'
    assert train(out, text, '--stop-after', 5)[0] == 0   # best at step 4, last at 5
    shutil.rmtree(out/'last')
    code, _, err = train(out, text, '--resume')
    assert code == 0 and len(err.strip().splitlines()) == 1, err
    assert 'last is missing; resuming from' in err and 'best (step 4)' in err
    assert json.loads((out/'run.json').read_text())['sessions'][1]['resumed_from'] == 'best'


@pytest.mark.parametrize('junk', ['\n', '{"step": 9, "lo', '\n{"step": 7, "loss": 1}\n{"st'])
def test_resume_repairs_a_cut_metrics_log(full, text, tmp_path, junk):
    out = tmp_path/'cut'
    assert train(out, text, '--stop-after', 4)[0] == 0
    with open(out/'metrics.jsonl', 'a') as f: f.write(junk)
    code, _, err = train(out, text, '--resume')
    assert code == 0, err
    assert log(out) == log(full)


def test_train_prints_the_final_validation(full, text, tmp_path):
    code, out, err = train(tmp_path/'v', text, '--stop-after', 6)
    assert code == 0, err
    last = [r for r in lt.read_jsonl(tmp_path/'v'/'metrics.jsonl') if r['val_loss'] is not None][-1]
    assert last['step'] == 4 and (f"final validation (step 4): loss {last['val_loss']:.4f}, "
        f"perplexity {last['val_ppl']:.2f}, {last['val_bpb']:.4f} bits per byte") in out


def test_loss_plot_labels_lie_inside_the_image(full, tmp_path):
    fig = lt.plot_metrics(full/'metrics.jsonl', tmp_path/'loss.png')
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    r = FigureCanvasAgg(fig).get_renderer()   # the figure as saved (closed after saving)
    box, ax = fig.bbox, fig.axes[0]
    for lab in (ax.xaxis.label, ax.yaxis.label):
        b = lab.get_window_extent(r)
        assert b.x0 >= box.x0 and b.y0 >= box.y0 and b.x1 <= box.x1 and b.y1 <= box.y1, lab


def test_disk_full_mid_run_keeps_the_previous_checkpoint(text, tmp_path, monkeypatch):
    import errno
    out, calls = tmp_path/'full', []
    real = lck.save_file
    def flaky(*a, **k):
        calls.append(1)
        if len(calls) > 6: raise OSError(errno.ENOSPC, 'No space left on device')
        return real(*a, **k)
    monkeypatch.setattr(lck, 'save_file', flaky)
    code, _, err = train(out, text)
    assert code == 1 and err.strip().count('\n') == 0 and 'No space left' in err, err
    monkeypatch.setattr(lck, 'save_file', real)
    k = json.loads((out/'last'/'meta.json').read_text())['step']
    assert k > 0 and not list(out.glob('.last.*')) + list(out.glob('.best.*'))
    assert train(out, text, '--resume')[0] == 0


@pytest.mark.parametrize('how,want,joined', [('auto', 'lines', False), ('lines', 'lines', False),
                                             ('gutenberg', 'gutenberg', True)])
def test_text_cleaning_keeps_verse_unless_told_and_is_recorded(tmp_path, how, want, joined):
    src = Path(os.environ.get('LLMBOOK_DATA', '/work/shared/data'))/'tinyshakespeare'/'input.txt'
    if not src.exists(): pytest.skip('tiny-shakespeare is not on disk')
    text = tmp_path/'shakespeare.txt'
    text.write_text(src.read_text()[:20_000])
    out = tmp_path/how
    code, _, err = cli('train', '--preset', 'austen-tiny', '--out', out, '--text', text, '--quiet',
                       '--clean', how, '--stop-after', 1, *TINY)
    assert code == 0, err
    assert json.loads((out/'run.json').read_text())['sessions'][0]['cleaning'] == {'shakespeare': want}
    tok = lt.BPETokenizer.load(out/'tokenizer.txt')
    seen = tok.decode(lt.load_tokens(out/'train.bin')[:40].tolist())
    assert seen.startswith('First Citizen:' + (' ' if joined else '\n') + 'Before we proceed'), seen


def test_hard_wrapped_text_without_markers_is_joined():
    from llmbook.data import clean_as
    para = ('It is a truth universally acknowledged, that a single man in\n'
            'possession of a good fortune, must be in want of a wife. However\n'
            'little known the feelings or views of such a man may be on his\n'
            'first entering a neighbourhood, this truth is so well fixed.')
    text, how = clean_as('\n\n'.join([para] * 4))
    assert how == 'wrapped' and text.count('\n') == 6   # four paragraphs, one line each


def test_second_ctrl_c_during_the_final_save_is_quiet(text, tmp_path):
    "Ctrl-C twice, the second while `last` is being written: exit 130, no traceback, no half save."
    import signal, time
    slow = ("import sys, time, llmbook.checkpoint as c\nreal, n = c.save_file, [0]\n"
            "def slow(*a, **k):\n    n[0] += 1\n    if n[0] > 2: time.sleep(10)  # after step 0's\n"
            "    return real(*a, **k)\nc.save_file = slow\n"
            "from llmbook.cli import main\nsys.exit(main(sys.argv[1:]))")
    out = tmp_path/'twice'
    p = subprocess.Popen([sys.executable, '-c', slow, 'train', '--out', str(out), '--preset',
                          'austen-tiny', '--text', str(text), '--quiet', '--steps', '5000', *TINY,
                          '--set', 'ckpt_every=100000', 'eval_every=100000'], stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    t0 = time.time()
    while not (out/'metrics.jsonl').exists() or len((out/'metrics.jsonl').read_text().splitlines()) < 3:
        assert time.time() - t0 < 60; time.sleep(0.1)
    p.send_signal(signal.SIGINT); time.sleep(1.0)   # the loop stops; the final save sleeps
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and 'Traceback' not in err and len(err.strip().splitlines()) <= 1, err
    assert json.loads((out/'last'/'meta.json').read_text())['step'] == 0   # the step-0 save, whole
    assert not list(out.glob('.last.*'))
    lck.load_checkpoint(out)  # verifies every checksum


# -- llmbook eval: every held-out token, the same figures train prints at its end
def naive_heldout(model, ids, context):
    "Sum of -log p over windows of `context`, one window at a time, in float64."
    ids, total = torch.as_tensor(ids.astype('int64')), 0.0
    with torch.no_grad():
        for s in range(0, len(ids) - 1, context):
            x, y = ids[s:s + context], ids[s + 1:s + context + 1]
            logp = model.eval()(x[None, :len(y)])[0].double().log_softmax(-1)
            total -= logp[torch.arange(len(y)), y].sum().item()
    return total / (len(ids) - 1)


def test_eval_scores_every_heldout_token(full):
    from llmbook.dataset import load_tokens
    code, out, err = cli('eval', '--ckpt', full, '--json', '--bs', 3)
    assert code == 0, err
    r, info = json.loads(out), json.loads((full/'data.json').read_text())
    assert (r['tokens'], r['bytes']) == (info['val_tokens'], info['val_bytes'])
    model, _, cfg, st = lck.load_checkpoint(full, 'best')
    assert r['step'] == st['step'] == json.loads((full/'run.json').read_text())['best_step']
    ref = naive_heldout(model, load_tokens(full/'val.bin'), cfg.context_len)
    assert r['loss'] == pytest.approx(ref, rel=1e-5)
    assert r['bpb'] == pytest.approx(ref * (r['tokens'] - 1) / (math.log(2) * r['bytes']))
    assert r['ppl'] == pytest.approx(math.exp(ref), rel=1e-5)


def test_train_ends_with_the_same_heldout_eval(text, tmp_path):
    code, out, err = train(tmp_path/'e', text)
    assert code == 0, err
    code, ev, err = cli('eval', '--ckpt', tmp_path/'e')
    assert code == 0, err
    assert f"held-out, every token: {ev.strip()}" in out.splitlines()
    kept = json.loads((tmp_path/'e'/'run.json').read_text())['eval']
    assert kept == lck.eval_checkpoint(tmp_path/'e')


def test_eval_of_text_files_and_of_the_last_checkpoint(full, text):
    code, out, err = cli('eval', '--ckpt', full, '--which', 'last', '--text', text, '--json')
    assert code == 0, err
    r = json.loads(out)
    model, tok, cfg, st = lck.load_checkpoint(full, 'last')
    assert r['checkpoint'].endswith('last') and r['step'] == st['step'] == 10
    clean = lt.run_texts([str(text)])[0]
    ids = tok.encode('\n\n'.join(clean.values()))
    assert r['tokens'] == len(ids) and r['text'] == ', '.join(clean)
    import numpy as np
    assert r['loss'] == pytest.approx(naive_heldout(model, np.array(ids), cfg.context_len),
                                      rel=1e-5)


def test_eval_rebuilds_the_austen_split_when_val_bin_is_gone(tmp_path):
    out = tmp_path/'a'
    code, _, err = cli('train', '--preset', 'austen-tiny', '--out', out, '--quiet', '--steps', 1,
                       *TINY)
    assert code == 0, err
    code, kept, err = cli('eval', '--ckpt', out, '--json')
    assert code == 0, err
    (out/'val.bin').unlink()
    code, rebuilt, err = cli('eval', '--ckpt', out, '--json')
    assert code == 0, err
    a, b = json.loads(kept), json.loads(rebuilt)
    assert b['text'] == 'the held-out split of Austen (rebuilt)'
    assert {k: a[k] for k in ('tokens', 'bytes', 'loss')} == \
        {k: b[k] for k in ('tokens', 'bytes', 'loss')}


def test_eval_without_val_bin_of_other_text_says_use_text(full, tmp_path):
    import shutil
    run = tmp_path/'copy'
    shutil.copytree(full, run)
    (run/'val.bin').unlink()
    before = snapshot(run)
    code, _, err = cli('eval', '--ckpt', run)
    one_line_error(code, err, 'val.bin is missing', '--text FILE')
    assert snapshot(run) == before


# -- --time-budget: the cosine runs over seconds; the run stops when they are spent
def test_time_budget_stops_the_run_saves_and_evaluates(text, tmp_path):
    out = tmp_path/'tb'
    code, _, err = train(out, text, '--steps', 100_000, '--time-budget', 1.5,
                        '--set', 'ckpt_every=100000')  # `last` saved when time is up
    assert code == 0, err
    run = json.loads((out/'run.json').read_text())
    assert run['sessions'][-1]['stopped'] == 'time_budget'
    step = run['steps']
    assert 0 < step < 100_000
    m = lt.read_jsonl(out/'metrics.jsonl')
    assert m[-1]['step'] == step and m[-1]['val_loss'] is not None  # scored at the end
    meta = json.loads((out/'last'/'meta.json').read_text())
    assert meta['step'] == step and meta['elapsed_s'] >= 1.5 and meta['lr'] == 3e-4  # min_lr
    lrs = [r['lr'] for r in m[1:]]
    assert lrs[:2] == [3e-3 / 2, 3e-3]  # warmup=2 in steps, then the decay over time
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))


def test_time_budget_resumes_from_the_time_spent(text, tmp_path):
    out = tmp_path/'tb'
    code, _, err = train(out, text, '--steps', 100_000, '--time-budget', 1,
                        '--set', 'ckpt_every=100000')
    assert code == 0, err
    first = json.loads((out/'last'/'meta.json').read_text())
    code, _, err = train(out, text, '--steps', 100_000, '--time-budget', 2, '--resume',
                        '--set', 'ckpt_every=100000')
    assert code == 0, err
    run = json.loads((out/'run.json').read_text())
    assert run['sessions'][1]['changed'] == {'time_budget': [1, 2]}
    assert run['sessions'][1]['stopped'] == 'time_budget'
    second = json.loads((out/'last'/'meta.json').read_text())
    assert second['step'] > first['step'] and 2 <= second['elapsed_s'] < 2 + first['elapsed_s']


def test_int8_eval_scores_the_rounded_weights_and_generate_int8_runs(full):
    from llmbook.dataset import load_tokens
    from llmbook.generate import int8_model
    code, out, err = cli('eval', '--ckpt', full, '--json', '--bs', 3, '--int8')
    assert code == 0, err
    r, f32 = json.loads(out), json.loads(cli('eval', '--ckpt', full, '--json', '--bs', 3)[1])
    model, _, cfg, _ = lck.load_checkpoint(full, 'best')
    ref = naive_heldout(int8_model(model), load_tokens(full/'val.bin'), cfg.context_len)
    assert r['loss'] == pytest.approx(ref, rel=1e-5) and r['loss'] != f32['loss']
    assert r['bpb'] == pytest.approx(f32['bpb'], rel=0.01)  # int8 costs < 1%
    a = cli('generate', '--ckpt', full, '--prompt', 'It was', '--max-new-tokens', 12, '--int8')
    assert a[0] == 0 and a == cli('generate', '--ckpt', full, '--prompt', 'It was',
                                  '--max-new-tokens', 12, '--int8')
    assert a[1].startswith('It was')
