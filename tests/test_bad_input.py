"""Bad input and faults, outside training: each probe asserts the exit code, ONE line on
stderr with no traceback, and that nothing on disk changed (the folders are hashed
before and after). Most run `main()` in this process: the console script is only
`sys.exit(main())`, and an exception escaping it would be the traceback."""
import contextlib, fcntl, hashlib, io, json, os, shutil, signal, subprocess, sys, time, urllib.error
F_SETPIPE_SZ = 1031  # Linux fcntl: a pipe's buffer size
import warnings
from pathlib import Path
import pytest, torch

from llmbook.cli import main
from procs import cli, snap, one_line

ROOT = Path(__file__).resolve().parents[1]
TINY = ['--set', 'n_layer=1', 'd_model=32', 'n_head=2', 'context_len=16', 'bs=4',
        'vocab_size=300', 'warmup=2', 'eval_every=4', 'eval_batches=2', 'ckpt_every=4',
        'sample_steps=[]']


def refused(root, *argv, code=1, needles=(), absent=()):
    "Run a command that must fail in one line and leave `root` as it was."
    before = snap(root)
    c, _, err = cli(*argv)
    one_line(c, err, code, *needles)
    assert snap(root) == before, 'files on disk changed'
    for p in absent: assert not Path(p).exists(), f'{p} was created'
    return err


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    "A pretrained run (`pre`), a classification fine-tune of it (`clf`), an export (`hf`)."
    from llmbook.data import load_austen
    r = tmp_path_factory.mktemp('bad')
    text = r/'text.txt'
    text.write_text(load_austen(105)['Persuasion'][:30_000])
    code, _, err = cli('train', '--preset', 'austen-tiny', '--out', r/'pre', '--text', text,
                       '--quiet', '--steps', 4, '--device', 'cpu', *TINY)
    assert code == 0, err
    code, _, err = cli('finetune', 'classify', '--base', r/'pre', '--out', r/'clf', '--steps', 4,
                       '--bs', 2, '--max-len', 16, '--stop-after', 1, '--quiet', '--device', 'cpu')
    assert code == 0, err
    pytest.importorskip('transformers')
    code, _, err = cli('export-hf', '--ckpt', r/'pre', '--out', r/'hf')
    assert code == 0, err
    return r


# -- every flag is checked when parsed: one line naming it, its value and what is allowed
FLAGS = [
    ('finetune', '--bs', '0'), ('finetune', '--max-len', '0'), ('finetune', '--steps', '0'),
    ('finetune', '--steps', '-5'), ('finetune', '--threads', '0'), ('finetune', '--threads', '-1'),
    ('finetune', '--lr', '0'), ('finetune', '--lr', 'nan'), ('finetune', '--seed', '-1'),
    ('finetune', '--stop-after', '0'), ('finetune', '--device', 'tpu'),
    ('generate', '--max-new-tokens', '-1'), ('generate', '--max-new-tokens', '100000'),
    ('generate', '--max-new-tokens', 'many'), ('generate', '--temperature', 'nan'),
    ('generate', '--temperature', 'inf'), ('generate', '--temperature', '-0.5'),
    ('generate', '--top-k', '-1'), ('generate', '--top-p', '0'), ('generate', '--top-p', '1.5'),
    ('generate', '--seed', '-3'),
    ('train', '--steps', '0'), ('train', '--threads', '0'), ('train', '--nproc', '0'),
    ('train', '--stop-after', '-1'), ('train', '--node-rank', '-1'), ('train', '--seed', '1.5'),
    ('ablate', '--steps', '0'), ('ablate', '--seeds', '-1'), ('ablate', '--threads', '0'),
    ('bench', '--threads', '0'), ('bench', '--device', 'tpu'),
    ('train', '--time-budget', '0'), ('train', '--time-budget', '-5'),
    ('train', '--time-budget', 'nan'), ('train', '--time-budget', 'soon'),
    ('eval', '--bs', '0'), ('eval', '--threads', '0'), ('eval', '--device', 'tpu'),
    ('sweep', '--threads', '0'), ('sweep', '--threads', '-2'), ('sweep', '--threads', 'all'),
]
BASE = {'finetune': ['finetune', 'classify', '--base', '{pre}', '--out', '{new}'],
        'generate': ['generate', '--ckpt', '{pre}'],
        'eval': ['eval', '--ckpt', '{pre}'],
        'train': ['train', '--preset', 'austen-tiny', '--out', '{new}'],
        'ablate': ['ablate', '--out', '{new}'], 'sweep': ['sweep', '--toy', '--out', '{new}'],
        'bench': ['bench', '--size', 'toy', '--out', '{new}']}


@pytest.mark.parametrize('cmd,flag,value', FLAGS, ids=[' '.join(f) for f in FLAGS])
def test_bad_flag_is_one_line_before_the_disk(root, cmd, flag, value):
    new = root/'new'
    argv = [a.format(pre=root/'pre', new=new) for a in BASE[cmd]]
    err = refused(root, *argv, flag, value, code=2, absent=[new],
                  needles=(f'llmbook {cmd}: error: argument {flag}', repr(value)))
    assert 'not allowed' in err or 'not available' in err


def test_generate_help_shows_defaults():
    code, out, _ = cli('generate', '--help')
    assert code == 0
    for d in ('(default: 100)', '(default: 0.8)', '(default: 50)', '(default: 0)', '(default: cpu)'):
        assert d in ' '.join(out.split()), d


# -- checkpoints that are not what generate and export-hf read
def _dump(ck):  # what a hand-edited config may look like: state_dict keys and shapes
    from safetensors.torch import load_file
    return {k: list(v.shape) for k, v in load_file(ck/'model.safetensors').items()}

DAMAGE = {
    'meta {}': lambda ck: (ck/'meta.json').write_text('{}'),
    'meta [1,2]': lambda ck: (ck/'meta.json').write_text('[1, 2]'),
    'meta not JSON': lambda ck: (ck/'meta.json').write_text('{"format": '),
    'config is a key dump': lambda ck: (ck/'meta.json').write_text(json.dumps(
        json.loads((ck/'meta.json').read_text()) | {'config': _dump(ck)})),
    'config values edited': lambda ck: (ck/'meta.json').write_text(json.dumps(
        (m := json.loads((ck/'meta.json').read_text())) | {'config': m['config'] | {
            'd_model': [32], 'n_layer': 0}})),
    'weights truncated': lambda ck: (ck/'model.safetensors').write_bytes(
        (ck/'model.safetensors').read_bytes()[:100]),
}
SAYS = {'meta {}': 'is not an llmbook checkpoint', 'meta [1,2]': 'is not an llmbook checkpoint',
        'meta not JSON': 'not valid JSON', 'config is a key dump': 'unknown config fields',
        'config values edited': 'must be a positive integer',
        'weights truncated': 'damaged'}


@pytest.mark.parametrize('cmd', ['generate', 'export-hf', 'eval'])
@pytest.mark.parametrize('damage', list(DAMAGE))
def test_damaged_checkpoint_is_one_line(root, tmp_path, cmd, damage):
    run = tmp_path/'run'
    shutil.copytree(root/'pre'/'best', run/'best')
    DAMAGE[damage](run/'best')
    out = ['--out', tmp_path/'hf'] if cmd == 'export-hf' else []
    err = refused(tmp_path, cmd, '--ckpt', run, *out, needles=(SAYS[damage],),
                  absent=[tmp_path/'hf'])
    assert '--force' not in err  # neither command has it for a checkpoint


@pytest.mark.parametrize('cmd', ['generate', 'export-hf', 'eval'])
def test_finetune_folder_says_what_it_is(root, tmp_path, cmd):
    out = ['--out', tmp_path/'hf'] if cmd == 'export-hf' else []
    refused(root, cmd, '--ckpt', root/'clf', *out, absent=[tmp_path/'hf'],
            needles=('a classify fine-tune', 'llmbook finetune classify', f'llmbook {cmd}'))


def test_prompt_with_special_token_gets_cli_advice(root):
    err = refused(root, 'generate', '--ckpt', root/'pre', '--prompt', 'a<|endoftext|>b',
                  needles=('--prompt', '<|endoftext|>'))
    assert 'allowed_special' not in err


# -- export-hf never destroys a run, a file or a folder it did not write
@pytest.mark.parametrize('where,says', [('pre', 'is the llmbook run'), ('pre/best', 'is the llmbook run'),
                                        ('pre/best/x', 'lies inside'), ('clf/last', 'is the llmbook run'),
                                        ('.', 'holds the llmbook run'), ('text.txt', 'is a file')])
def test_export_out_that_would_destroy_data_is_refused(root, where, says):
    refused(root, 'export-hf', '--ckpt', root/'pre', '--out', root/where, '--force', needles=(says,))


def test_export_force_replaces_only_an_earlier_export(root, tmp_path):
    mine = tmp_path/'mine'
    mine.mkdir(); (mine/'notes.txt').write_text('keep me')
    refused(tmp_path, 'export-hf', '--ckpt', root/'pre', '--out', mine, '--force',
            needles=('not an earlier export',))


@pytest.mark.parametrize('out', ['/sys/llmbook-x', '/proc/llmbook-x/hf'])
def test_export_unwritable_out_is_one_line(root, out):
    refused(root, 'export-hf', '--ckpt', root/'pre', '--out', out, needles=(out.split('/')[1],))


@pytest.mark.parametrize('cmd', ['export-hf', 'bench'])
def test_missing_hf_libraries_name_the_extra(root, monkeypatch, cmd):
    monkeypatch.setitem(sys.modules, 'transformers', None)  # import fails as if not installed
    argv = (['export-hf', '--ckpt', root/'pre', '--out', root/'new'] if cmd == 'export-hf'
            else ['bench', '--size', 'toy', '--out', root/'new'])
    refused(root, *argv, needles=('pip install "llmbook[hf]"',), absent=[root/'new'])


# -- finetune: wrong resume, wrong base, wrong folder: one line, nothing left behind
def test_finetune_resume_refuses_changed_settings(root):
    refused(root, 'finetune', 'classify', '--out', root/'clf', '--resume', '--bs', 4,
            needles=('--resume keeps the settings', '--bs 2'))


def test_finetune_resume_other_task(root):
    refused(root, 'finetune', 'instruct', '--out', root/'clf', '--resume', needles=('classify run',))


@pytest.mark.parametrize('base', ['clf', 'text.txt', 'nowhere'])
def test_finetune_bad_base_leaves_no_folder(root, base):
    refused(root, 'finetune', 'classify', '--base', root/base, '--out', root/'new', '--quiet',
            absent=[root/'new'])


def test_finetune_bad_data_leaves_no_folder(root):
    refused(root, 'finetune', 'classify', '--base', root/'pre', '--out', root/'new', '--quiet',
            '--data', root/'no-such.tsv', absent=[root/'new'])


def test_finetune_unwritable_out(root):
    refused(root, 'finetune', 'classify', '--base', root/'pre', '--out', '/sys/llmbook-x', '--quiet',
            needles=('/sys/llmbook-x',))


# -- missing data: one line, which data set, where, how; no empty cache folders
@pytest.fixture
def offline(tmp_path, monkeypatch):
    def no_network(*a, **k): raise urllib.error.URLError('no network')
    monkeypatch.setattr('urllib.request.urlopen', no_network)
    monkeypatch.setattr('time.sleep', lambda s: None)
    monkeypatch.setenv('LLMBOOK_DATA', str(tmp_path/'data'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    (tmp_path/'data').mkdir()
    return tmp_path


def test_offline_austen_is_one_line(offline):
    refused(offline, 'train', '--preset', 'austen-tiny', '--out', offline/'run', '--quiet',
            needles=("data set 'austen' is missing", str(offline/'data'), 'LLMBOOK_DATA',
                     'could not download http', 'all 7 novels'),
            absent=[offline/'cache'])


def test_offline_sms_names_the_real_destination(root, offline):
    err = refused(offline, 'finetune', 'classify', '--base', root/'pre', '--out', offline/'ft',
                  '--quiet', needles=("data set 'sms_spam' is missing",
                                      str(offline/'cache'/'llmbook'/'sms_spam'/'SMSSpamCollection')),
                  absent=[offline/'ft', offline/'cache'])
    assert 'tmp' not in err.replace(str(offline), '')


# -- real processes: tokens stream, and Ctrl-C is a quiet exit 130
def test_generate_streams_and_ctrl_c_is_quiet(root):
    p = subprocess.Popen(['llmbook', 'generate', '--ckpt', str(root/'pre'), '--prompt', 'It was',
                          '--max-new-tokens', '10000'], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    fcntl.fcntl(p.stdout.fileno(), F_SETPIPE_SZ, 4096)  # a fast model blocks, it cannot finish
    first = p.stdout.read(len('It was') + 3)  # the prompt, then tokens as they come
    assert first.startswith('It was') and len(first) == len('It was') + 3
    assert p.poll() is None, 'the output came only at the end'
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == '', err


def test_ctrl_c_during_start_up_is_quiet(root):
    p = subprocess.Popen(['llmbook', 'export-hf', '--ckpt', str(root/'pre'), '--out', str(root/'new')],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    maps, t0 = Path(f'/proc/{p.pid}/maps'), time.time()
    while time.time() - t0 < 30 and 'libtorch' not in maps.read_text():  # inside main()
        time.sleep(0.01)  # torch is loaded; transformers, then the export, come next
    before = snap(root)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and 'Traceback' not in err, err
    assert snap(root) == before


# -- training settings (--set) are checked before the disk: one line naming the setting
SETTINGS = ['bs=0', 'context_len=-1', 'eval_every=0', 'ckpt_every=0', 'grad_accum=0',
            'eval_batches=0', 'max_lr=abc', 'max_lr=NaN', 'max_lr=0', 'min_lr=-1',
            'sample_steps=5', 'sample_steps=[-1]', 'grad_accum=3', 'n_kv_head=3', 'dropout=1',
            'vocab_size=100', 'dtype="float8"', 'val_frac=0', 'steps=-1', 'warmup=-1',
            'd_model=30', 'beta2=1', 'weight_decay=-0.1', 'style="gpt3"', 'compile="yes"',
            'n_layer=1.5', 'seed=-1']


@pytest.mark.parametrize('setting', SETTINGS)
def test_bad_setting_is_one_line_before_the_disk(root, setting):
    key = setting.split('=')[0]
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'new', '--text',
            root/'text.txt', '--quiet', '--set', setting, absent=[root/'new'],
            needles=(f'setting {key}=', 'is not allowed'))


def test_bad_setting_in_the_api_is_one_line():
    from llmbook.checkpoint import TrainConfig
    with pytest.raises(ValueError, match=r'setting bs=0 is not allowed'): TrainConfig(bs=0)


def _resume_pre(root, run, *extra):
    return ('train', '--preset', 'austen-tiny', '--out', run, '--text', root/'text.txt',
            '--quiet', '--device', 'cpu', *TINY, '--resume', *extra)


def test_resume_past_the_end_is_refused(root):
    refused(root, *_resume_pre(root, root/'pre', '--steps', 2),
            needles=('at step 4, past --steps 2', '--steps 5'))


def test_train_resume_of_a_finetune_names_the_command(root):
    refused(root, *_resume_pre(root, root/'clf'),
            needles=('a classify fine-tune', 'llmbook finetune classify'))


@pytest.mark.parametrize('name', ['run.json', 'data.json'])
def test_resume_with_corrupt_run_file_names_it(root, tmp_path, name):
    run = tmp_path/'run'
    shutil.copytree(root/'pre', run)
    (run/name).write_text('{"config": ')
    refused(tmp_path, *_resume_pre(root, run, '--steps', 5), needles=(str(run/name), 'not valid JSON'))


def test_resume_of_other_shape_is_still_refused(root):
    refused(root, *_resume_pre(root, root/'pre', '--set', 'd_model=64'),
            needles=('config differs', 'd_model: 32 -> 64'))


def test_load_checkpoint_which_must_be_last_or_best(root):
    from llmbook.checkpoint import load_checkpoint
    with pytest.raises(ValueError, match="which='bogus' is not allowed"):
        load_checkpoint(root/'pre', which='bogus')


@pytest.mark.parametrize('where', ['llmbook.train:encode_to_file', 'llmbook.checkpoint:save_file'],
                         ids=['while preparing data', 'at the first save'])
def test_disk_full_before_the_first_checkpoint_is_one_line_and_leaves_no_run(root, monkeypatch, where):
    import errno, importlib
    mod, name = where.split(':')
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(importlib.import_module(mod), name, full)
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'new', '--text',
            root/'text.txt', '--quiet', *TINY, needles=('No space left on device',),
            absent=[root/'new'])


def test_bad_clean_choice_is_one_line(root):
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'new', '--text',
            root/'text.txt', '--clean', 'joined', code=2, absent=[root/'new'],
            needles=('argument --clean', "'joined'"))


# -- issue #24: one owner for every run folder. Each probe: one line, no traceback, and the
# folders hashed before and after are unchanged (nothing lost, nothing half-written).
def _nest(n=3000):  # JSON nested deeper than Python's parser can follow
    return '[' * n + ']' * n


def test_export_force_keeps_notes_and_runs_beside_an_export(root, tmp_path):
    proj = tmp_path/'proj'
    shutil.copytree(root/'hf', proj)  # an earlier export ...
    (proj/'NOTES.md').write_text('mine')  # ... with notes and a run three levels down
    shutil.copytree(root/'pre'/'best', proj/'runs'/'2024'/'austen'/'best')
    refused(tmp_path, 'export-hf', '--ckpt', root/'pre', '--out', proj, '--force',
            needles=('not an earlier export', 'NOTES.md'))


def test_export_force_through_a_symlink_is_refused(root, tmp_path):
    shutil.copytree(root/'hf', tmp_path/'real')
    (tmp_path/'link').symlink_to(tmp_path/'real')
    refused(tmp_path, 'export-hf', '--ckpt', root/'pre', '--out', tmp_path/'link', '--force',
            needles=('symbolic link',))


def _bundle(where):
    "An earlier web bundle's three files (their content is not read)."
    where.mkdir(parents=True)
    for f in ('manifest.json', 'model.onnx', 'tokenizer.json'): (where/f).write_text('{}')
    return where


def test_export_web_force_keeps_notes_and_runs_beside_a_bundle(root, tmp_path):
    proj = _bundle(tmp_path/'proj')
    (proj/'NOTES.md').write_text('mine')
    shutil.copytree(root/'pre'/'best', proj/'runs'/'austen'/'best')
    refused(tmp_path, 'export-web', root/'pre', proj, '--force',
            needles=("not the bundle's", 'NOTES.md'))


def test_export_web_force_through_a_symlink_is_refused(root, tmp_path):
    _bundle(tmp_path/'real')
    (tmp_path/'link').symlink_to(tmp_path/'real')
    refused(tmp_path, 'export-web', root/'pre', tmp_path/'link', '--force',
            needles=('symbolic link',))


@pytest.mark.parametrize('force', [[], ['--force']], ids=['plain', 'force'])
def test_train_into_a_folder_that_is_not_a_run_is_refused(root, tmp_path, force):
    mine = tmp_path/'mine'
    mine.mkdir(); (mine/'data.json').write_text('{"mine": 1}')
    refused(tmp_path, 'train', '--preset', 'austen-tiny', '--out', mine, '--text',
            root/'text.txt', '--quiet', *TINY, *force, needles=('holds no llmbook run', 'data.json'))


def test_train_that_fails_leaves_the_users_files(root, tmp_path):
    "A new run in an empty folder that fails (text too short) leaves the folder as it was."
    (tmp_path/'short.txt').write_text('Too short.')
    (tmp_path/'new').mkdir()
    refused(tmp_path, 'train', '--preset', 'austen-tiny', '--out', tmp_path/'new', '--text',
            tmp_path/'short.txt', '--quiet', *TINY)


def test_train_force_over_a_finetune_is_refused(root):
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'clf', '--text',
            root/'text.txt', '--quiet', *TINY, '--force',
            needles=('a classify fine-tune', 'not a train run'))


def test_train_force_keeps_files_beside_the_run(root, tmp_path):
    run = tmp_path/'run'
    shutil.copytree(root/'pre', run)
    (run/'NOTES.md').write_text('mine')
    code, _, err = cli('train', '--preset', 'austen-tiny', '--out', run, '--text',
                       root/'text.txt', '--quiet', '--steps', 2, '--device', 'cpu', *TINY,
                       '--force', '--no-eval')
    assert code == 0, err
    assert (run/'NOTES.md').read_text() == 'mine'


def test_train_out_that_is_a_symlink_is_refused(root, tmp_path):
    (tmp_path/'link').symlink_to(root/'pre')
    refused(root, 'train', '--preset', 'austen-tiny', '--out', tmp_path/'link', '--text',
            root/'text.txt', '--quiet', *TINY, '--force', needles=('symbolic link',))


@pytest.mark.parametrize('out', ['pre', 'pre/sub'])
def test_finetune_out_over_its_base_is_refused(root, out):
    refused(root, 'finetune', 'classify', '--base', root/'pre', '--out', root/out, '--force',
            '--quiet', needles=('overlap',))


def test_finetune_force_over_a_pretrained_run_is_refused(root, tmp_path):
    shutil.copytree(root/'pre', tmp_path/'other')  # another pretrained run
    refused(tmp_path, 'finetune', 'classify', '--base', root/'pre', '--out', tmp_path/'other',
            '--force', '--quiet', needles=('a train run', 'not a finetune run'))


def test_sweep_force_over_a_train_run_is_refused(root):
    refused(root, 'sweep', '--toy', '--out', root/'pre', '--force',
            needles=('a train run', 'not a sweep run'))


def test_sweep_again_without_resume_keeps_an_interrupted_log(tmp_path):
    out = tmp_path/'swA'
    out.mkdir()
    (out/'sweep.jsonl').write_text('{"axis": "grid", "size": "T1", "steps": 4}\n' * 2)
    refused(tmp_path, 'sweep', '--toy', '--out', out, needles=('already holds a sweep', '--resume'))


def test_sweep_into_a_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('x')
    refused(tmp_path, 'sweep', '--toy', '--out', tmp_path/'mine', '--force',
            needles=('holds no llmbook run',))


@pytest.mark.parametrize('name', ['../victim', '..', '.', 'a/b', '.hidden'])
def test_speedrun_name_cannot_leave_the_log(tmp_path, name):
    (tmp_path/'victim').mkdir(); (tmp_path/'victim'/'run.json').write_text('{}')
    refused(tmp_path, 'speedrun', name, '--change', 'x', '--log', tmp_path/'log', '--force',
            needles=('must be one folder name',), absent=[tmp_path/'log'])


def test_speedrun_does_not_replace_a_train_run_of_the_same_name(root, tmp_path):
    shutil.copytree(root/'pre', tmp_path/'log'/'a')
    refused(tmp_path, 'speedrun', 'a', '--change', 'x', '--log', tmp_path/'log',
            '--no-calibrate', needles=('already exists', '--force'))


def test_speedrun_force_does_not_replace_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path/'log'/'a').mkdir(parents=True); (tmp_path/'log'/'a'/'notes.txt').write_text('x')
    refused(tmp_path, 'speedrun', 'a', '--change', 'x', '--log', tmp_path/'log', '--force',
            '--no-calibrate', needles=('is not an attempt of this log',))


def test_failed_speedrun_attempt_is_one_line(tmp_path, monkeypatch):
    import llmbook.speedrun as sr
    monkeypatch.setattr(sr, '_run_child', lambda *a, **k: (
        1, 'Traceback (most recent call last):\nValueError: boom\n', 1.0, 0.0))
    refused(tmp_path, 'speedrun', 'a', '--change', 'x', '--log', tmp_path/'log',
            '--no-calibrate', needles=("attempt 'a' seed 1 failed", 'boom'),
            absent=[tmp_path/'log'])


def test_speedrun_record_without_a_name_is_one_line(tmp_path):
    (tmp_path/'log').mkdir(); (tmp_path/'log'/'records.jsonl').write_text('{"bpb": 1.6}\n')
    refused(tmp_path, 'speedrun', 'a', '--change', 'x', '--log', tmp_path/'log',
            '--no-calibrate', needles=('records.jsonl line 1', 'no name'))


# -- one writer per run folder; readers never see a half-swapped checkpoint
def _held(folder):
    from llmbook.checkpoint import RunLock
    return RunLock(folder, 'llmbook train --out elsewhere (a test)')


def test_second_resume_while_a_run_is_written_is_refused(root):
    with _held(root/'pre'):
        before = snap(root/'clf')
        c, _, err = cli(*_resume_pre(root, root/'pre', '--steps', 6))
        one_line(c, err, 1, 'being written by another llmbook process', 'a test')
        assert snap(root/'clf') == before


def test_sweep_into_a_folder_being_written_is_refused(tmp_path):
    (tmp_path/'sw').mkdir()
    (tmp_path/'sw'/'sweep.jsonl').write_text('{"axis": "grid", "size": "T1", "steps": 4}\n')
    with _held(tmp_path/'sw'):
        c, _, err = cli('sweep', '--toy', '--out', tmp_path/'sw', '--resume')
        one_line(c, err, 1, 'being written by another llmbook process')
    assert (tmp_path/'sw'/'sweep.jsonl').read_text().count('\n') == 1


def test_finetune_resume_while_it_is_written_is_refused(root):
    with _held(root/'clf'):
        c, _, err = cli('finetune', 'classify', '--out', root/'clf', '--resume', '--quiet')
        one_line(c, err, 1, 'being written by another llmbook process')


def test_loading_while_saving_never_sees_a_damaged_checkpoint(root, tmp_path):
    import threading
    from llmbook.checkpoint import load_checkpoint, save_checkpoint
    shutil.copytree(root/'pre', tmp_path/'run')
    model, tok, cfg, st = load_checkpoint(tmp_path/'run', 'last')
    stop, errors = threading.Event(), []
    def saver():
        while not stop.is_set():
            save_checkpoint(tmp_path/'run'/'last', model, cfg, tmp_path/'run'/'tokenizer.txt', 4)
    t = threading.Thread(target=saver); t.start()
    try:
        for _ in range(30):
            try: load_checkpoint(tmp_path/'run', 'last')
            except (ValueError, OSError) as e: errors.append(str(e))
    finally: stop.set(); t.join()
    assert not errors, errors[0]


def test_a_failed_run_json_write_keeps_the_finetunes_record(root, tmp_path, monkeypatch):
    import errno, llmbook.instruct as ins
    shutil.copytree(root/'clf', tmp_path/'clf')
    before = (tmp_path/'clf'/'run.json').read_bytes()
    def full(obj, f, **k):
        f.write('{"base": '); raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(ins.json, 'dump', full)
    c, _, err = cli('finetune', 'classify', '--out', tmp_path/'clf', '--resume', '--quiet',
                    '--stop-after', 1, '--device', 'cpu')
    one_line(c, err, 1, 'No space left on device')
    assert (tmp_path/'clf'/'run.json').read_bytes() == before


# -- tracebacks that became one line
def test_tiny_temperature_is_one_line(root):
    refused(root, 'generate', '--ckpt', root/'pre', '--temperature', '1e-40',
            needles=('too small', 'use 0'))


def test_set_nested_too_deeply_is_one_line(root):
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'new', '--text',
            root/'text.txt', '--quiet', '--set', 'sample_steps=' + _nest(),
            needles=('nested too deeply',), absent=[root/'new'])


@pytest.mark.parametrize('data', ['nested', 'ten records'])
def test_bad_instruction_file_is_one_line(root, tmp_path, data):
    f = tmp_path/'instr.json'
    f.write_text(_nest() if data == 'nested' else json.dumps(
        [dict(instruction=f'Say {i}.', input='', output=f'{i}') for i in range(10)]))
    refused(root, 'finetune', 'instruct', '--base', root/'pre', '--out', root/'new', '--quiet',
            '--data', f, '--steps', 2, needles=('instr.json',), absent=[root/'new'])


def test_meta_json_nested_too_deeply_is_one_line(root, tmp_path):
    shutil.copytree(root/'pre'/'best', tmp_path/'run'/'best')
    (tmp_path/'run'/'best'/'meta.json').write_text(_nest())
    refused(tmp_path, 'generate', '--ckpt', tmp_path/'run', needles=('nested too deeply',))


def test_disk_full_inside_safetensors_is_one_line(root, monkeypatch):
    import llmbook.checkpoint as ck
    from safetensors import SafetensorError
    def full(*a, **k): raise SafetensorError('Error while serializing: I/O error: No space left '
                                             'on device (os error 28)')
    monkeypatch.setattr(ck, 'save_file', full)
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'new', '--text',
            root/'text.txt', '--quiet', *TINY, needles=('No space left on device',),
            absent=[root/'new'])


def test_readme_outside_the_repository_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(tmp_path, 'readme', needles=('root of the llmbook repository',),
            absent=[tmp_path/'README.md'])


# -- hangs and silent wrong results that became one line
def _edit_meta(ck, **over):
    m = json.loads((ck/'meta.json').read_text())
    for k, v in over.items():
        if v is None: m.pop(k)
        else: m[k] = v
    (ck/'meta.json').write_text(json.dumps(m))


def test_meta_json_of_a_huge_model_is_refused_before_building_it(root, tmp_path):
    ck = tmp_path/'run'/'best'
    shutil.copytree(root/'pre'/'best', ck)
    cfg = json.loads((ck/'meta.json').read_text())['config']
    _edit_meta(ck, config=cfg | {'n_layer': 2_000_000})
    t0 = time.time()
    refused(tmp_path, 'generate', '--ckpt', tmp_path/'run', needles=('does not match',))
    assert time.time() - t0 < 30


def test_meta_json_without_checksums_is_refused(root, tmp_path):
    ck = tmp_path/'run'/'best'
    shutil.copytree(root/'pre'/'best', ck)
    _edit_meta(ck, files=None)
    (ck/'model.safetensors').write_bytes((ck/'model.safetensors').read_bytes()[:-1])
    refused(tmp_path, 'eval', '--ckpt', tmp_path/'run', needles=('is not an llmbook checkpoint',))


def test_two_text_files_with_one_name_are_refused(root, tmp_path):
    for d in 'ab':
        (tmp_path/d).mkdir(); shutil.copy(root/'text.txt', tmp_path/d/'book.txt')
    refused(tmp_path, 'train', '--preset', 'austen-tiny', '--out', tmp_path/'new', '--text',
            tmp_path/'a'/'book.txt', tmp_path/'b'/'book.txt', '--quiet', *TINY,
            needles=("both called 'book'",), absent=[tmp_path/'new'])


def test_eval_of_a_held_out_split_another_tokenizer_made_is_refused(root, tmp_path):
    from llmbook.tokenizer import BPETokenizer
    run = tmp_path/'run'
    shutil.copytree(root/'pre', run)  # the checkpoint, in a run whose val.bin ...
    BPETokenizer.train('An entirely different text, about other things. ' * 50, 300).save(
        run/'tokenizer.txt')  # ... another tokenizer wrote
    refused(tmp_path, 'eval', '--ckpt', run, needles=("not made by this checkpoint's tokenizer",
                                                     '--text'))


def test_an_edited_austen_file_is_refused_though_its_sha_is_known(offline):
    from llmbook.data import AUSTEN
    (offline/'data'/'austen').mkdir()
    for b in AUSTEN.values():
        (offline/'data'/b.file).write_text('It is a truth universally acknowledged. ' * 200)
    refused(offline, 'train', '--preset', 'austen-tiny', '--out', offline/'run', '--quiet',
            needles=('is not the file llmbook pins', 'restore the original'),
            absent=[offline/'run'])


def test_sigterm_saves_last_and_exits_without_the_final_scoring(root, tmp_path):
    "A scheduler's SIGTERM: `last` saved, exit 143 within seconds, no held-out evaluation after it."
    out = tmp_path/'run'
    p = subprocess.Popen(['llmbook', 'train', '--preset', 'austen-tiny', '--out', str(out),
                          '--text', str(root/'text.txt'), '--quiet', '--device', 'cpu',
                          '--steps', '5000', *TINY], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 120 and not ((out/'metrics.jsonl').exists() and len(
            (out/'metrics.jsonl').read_text().splitlines()) > 5):
        time.sleep(0.2)
    t1 = time.time()
    p.send_signal(signal.SIGTERM)
    stdout, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert time.time() - t1 < 30, 'took too long to stop'
    assert 'held-out, every token' not in stdout and 'Traceback' not in err, (stdout, err)
    assert (out/'last'/'meta.json').exists() and not (out/'.llmbook.lock').exists()


def test_sigterm_during_sweep_resume_keeps_the_finished_runs(root, tmp_path):
    "SIGTERM while the log is being rewritten: the finished runs are still in it afterwards."
    out = tmp_path/'sw'
    out.mkdir()
    kept = ''.join(json.dumps(dict(axis='grid', size='T1', steps=n, frac=1, val_bpb=3.0,
                                   cpu_s=1.0)) + '\n' for n in (4, 8))
    (out/'sweep.jsonl').write_text(kept)
    ino = (out/'sweep.jsonl').stat().st_ino
    p = subprocess.Popen(['llmbook', 'sweep', '--toy', '--resume', '--threads', '1', '--out',
                          str(out), '--text', str(root/'text.txt')], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.time()  # the log was just rewritten with its kept lines: stop it now
    while time.time() - t0 < 120 and p.poll() is None and \
            (out/'sweep.jsonl').stat().st_ino == ino:
        time.sleep(0.005)
    assert p.poll() is None, 'the sweep ended before the signal'
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode in (130, 143) and 'Traceback' not in err, err
    assert (out/'sweep.jsonl').read_text().startswith(kept)
    assert not (out/'.llmbook.lock').exists()


# -- issue #24, second round: --text that is not UTF-8 prose, for every command that reads it
def _texts(d:Path) -> dict:
    "Inputs that are not a text to train on, each named by what it is."
    d.mkdir(exist_ok=True)
    (d/'empty').mkdir(exist_ok=True)
    (d/'notes').mkdir(exist_ok=True); (d/'notes'/'a.md').write_text('# not a .txt')
    (d/'zero.txt').write_bytes(b'')
    (d/'blank.txt').write_text(' \n\n\t\n')
    (d/'latin1.txt').write_bytes('Caf\u00e9 au lait.\n'.encode('latin-1') * 50)
    (d/'utf16.txt').write_bytes(('It was a truth. ' * 200).encode('utf-16'))
    (d/'image.txt').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * 8)
    if not (d/'loop.txt').is_symlink(): (d/'loop.txt').symlink_to(d/'loop.txt')
    return d

TEXTS = {'empty folder': ('empty', 'no .txt files in folder'),
         'folder of .md': ('notes', 'no .txt files in folder'),
         'zero bytes': ('zero.txt', 'zero.txt is empty'),
         'only blanks': ('blank.txt', 'blank.txt is empty'),
         'latin-1': ('latin1.txt', 'latin1.txt is not UTF-8 text'),
         'UTF-16 with BOM': ('utf16.txt', 'utf16.txt is not UTF-8 text'),
         'binary': ('image.txt', 'image.txt is not UTF-8 text'),
         'symlink loop': ('loop.txt', 'loop.txt')}
TEXT_CMDS = {'train': ['train', '--preset', 'austen-tiny', '--out', '{new}', '--quiet', *TINY],
             'eval': ['eval', '--ckpt', '{pre}'],
             'sweep': ['sweep', '--toy', '--threads', '1', '--out', '{new}'],
             'ablate': ['ablate', '--steps', '1', '--threads', '1', '--out', '{new}']}


@pytest.mark.parametrize('cmd', list(TEXT_CMDS))
@pytest.mark.parametrize('kind', list(TEXTS))
def test_text_that_is_not_prose_is_one_line(root, tmp_path, cmd, kind):
    d = _texts(tmp_path/'in')
    name, says = TEXTS[kind]
    argv = [a.format(pre=root/'pre', new=tmp_path/'new') for a in TEXT_CMDS[cmd]]
    refused(root, *argv[:1], '--text', d/name, *argv[1:], needles=(says,),
            absent=[tmp_path/'new'])


# were accepted: a UTF-16 file without a byte-order mark decodes as "UTF-8" (every other byte
# a NUL), and a run folder passed as --text was read for its tokenizer.txt files
@pytest.mark.parametrize('what', ['UTF-16 without BOM', 'a run folder'])
def test_text_that_only_decodes_is_refused(root, tmp_path, what):
    f = tmp_path/'utf16le.txt'
    f.write_bytes(('It was a truth universally acknowledged. ' * 100).encode('utf-16-le'))
    refused(root, 'eval', '--ckpt', root/'pre', '--text', f if what[0] == 'U' else root/'pre',
            needles=('utf16le.txt' if what[0] == 'U' else str(root/'pre'),))


# said only "'utf-8' codec can't decode byte 0xe9 in position 3" (no file, no fix), and an
# empty SMS file "No objects to concatenate" (pandas)
@pytest.mark.parametrize('task,data', [('classify', 'latin1.txt'), ('instruct', 'latin1.txt'),
                                       ('classify', 'utf16.txt'), ('classify', 'image.txt'),
                                       ('classify', 'zero.txt')])
def test_finetune_data_that_is_not_utf8_names_the_file(root, tmp_path, task, data):
    d = _texts(tmp_path/'in')
    refused(root, 'finetune', task, '--base', root/'pre', '--out', tmp_path/'new', '--quiet',
            '--data', d/data, needles=(data,), absent=[tmp_path/'new'])


@pytest.mark.parametrize('task,data,says', [('classify', 'empty', 'Is a directory'),
                                            ('instruct', 'zero.txt', 'zero.txt is empty'),
                                            ('instruct', 'empty', 'Is a directory')])
def test_finetune_data_that_is_not_a_data_file_is_one_line(root, tmp_path, task, data, says):
    d = _texts(tmp_path/'in')
    refused(root, 'finetune', task, '--base', root/'pre', '--out', tmp_path/'new', '--quiet',
            '--data', d/data, needles=(says,), absent=[tmp_path/'new'])


# -- --set values of the wrong kind: one line naming the setting, before the disk
MORE_SETTINGS = {'n_head=3': 'must be a multiple of n_head=3', 'bs': 'expected key=value',
                 '=3': "unknown config fields ['']", 'beta1=0.9': "unknown config fields ['beta1']",
                 'bs=4.0': 'setting bs=4.0', 'bs=true': 'setting bs=True', 'bs=[4]': 'setting bs=(4,)',
                 'bs=None': "setting bs='None'", 'bs=1e100': 'setting bs=1e+100',
                 'max_lr=inf': "setting max_lr='inf'", 'vocab_size=256': 'must be an integer >= 257',
                 'n_kv_head=0': 'setting n_kv_head=0', 'grad_clip=-1': 'setting grad_clip=-1',
                 'time_budget=-1': 'setting time_budget=-1', 'dropout=-0.1': 'setting dropout=-0.1',
                 'd_model=-32': 'setting d_model=-32', 'eval_every=1.5': 'setting eval_every=1.5',
                 'n_layer=true': 'setting n_layer=True',
                 # were accepted: a schedule that climbs from max_lr up to min_lr ...
                 'min_lr=1': 'setting min_lr=1', 'max_lr=1e-4': 'must be <= max_lr=0.0001',
                 # ... and a model whose weights outgrow the memory (a traceback from torch)
                 'd_model=1000000': 'GiB for its weights alone',
                 'n_layer=100000000': 'lower d_model, n_layer or vocab_size'}


@pytest.mark.parametrize('setting', list(MORE_SETTINGS))
def test_setting_of_the_wrong_kind_is_one_line(root, setting):
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'new', '--text',
            root/'text.txt', '--quiet', '--threads', 1, *TINY, setting,
            needles=(MORE_SETTINGS[setting],), absent=[root/'new'])


# -- a run whose every checkpoint is of a newer format, or lost its tokenizer: every reader
def _every_ck(run, f):
    for ck in ('best', 'last'): f(run/ck)

CK_DAMAGE = {
    'empty folder': (lambda run: [shutil.rmtree(run/ck) for ck in ('best', 'last')],
                     'no checkpoint in'),
    'a newer format': (lambda run: _every_ck(run, lambda ck: _edit_meta(
        ck, format='llmbook-ckpt 2')), "'llmbook-ckpt 2'"),
    'tokenizer missing': (lambda run: _every_ck(run, lambda ck: (ck/'tokenizer.txt').unlink()),
                          'tokenizer.txt is missing'),
    'tokenizer damaged': (lambda run: _every_ck(run, lambda ck: (ck/'tokenizer.txt').write_text(
        'llmbook-bpe 1\n')), 'tokenizer.txt is truncated or corrupt')}
CK_CMDS = {'generate': ['generate', '--ckpt', '{run}'], 'eval': ['eval', '--ckpt', '{run}'],
           'export-hf': ['export-hf', '--ckpt', '{run}', '--out', '{new}'],
           'export-web': ['export-web', '{run}', '{new}'],
           'finetune': ['finetune', 'classify', '--base', '{run}', '--out', '{new}', '--quiet']}


@pytest.mark.parametrize('cmd', list(CK_CMDS))
@pytest.mark.parametrize('damage', list(CK_DAMAGE))
def test_run_with_no_readable_checkpoint_is_one_line(root, tmp_path, cmd, damage):
    run = tmp_path/'run'
    shutil.copytree(root/'pre', run)
    f, says = CK_DAMAGE[damage]
    f(run)
    if cmd in ('export-hf', 'export-web'): pytest.importorskip('onnx' if cmd[-1] == 'b' else 'transformers')
    argv = [a.format(run=run, new=tmp_path/'new') for a in CK_CMDS[cmd]]
    refused(tmp_path, *argv, needles=(says,), absent=[tmp_path/'new'])


# a fine-tune that diverged said "the last good checkpoint OUT/last (step 0) is kept", but
# none was saved (and --force then refused OUT), and run.json did not record that it stopped
@pytest.mark.parametrize('task', ['classify', 'instruct'])
def test_finetune_divergence_keeps_what_it_says(root, tmp_path, task):
    data = tmp_path/'instr.json'
    data.write_text(json.dumps([dict(instruction=f'Say {i}.', input='', output=f'{i}')
                                for i in range(60)]))
    out = tmp_path/'ft'
    more = ['--data', data, '--max-len', 200] if task == 'instruct' else ['--max-len', 16]
    c, _, err = cli('finetune', task, '--base', root/'pre', '--out', out, '--steps', 3, '--bs', 2,
                    '--quiet', '--device', 'cpu', '--lr', '1e9', *more)
    one_line(c, err, 1, 'diverged', '--lr')
    assert 'is kept' in err and (out/'last'/'meta.json').exists(), err  # the start, saved
    run = json.loads((out/'run.json').read_text())
    assert run['sessions'][-1].get('stopped') == 'diverged', run['sessions']


# -- SIGTERM to a data-parallel run (`--nproc 2`, through torchrun): the ranks stop and save
@pytest.fixture(scope='module')
def sigterm_nproc2(root, tmp_path_factory):
    "`llmbook train --nproc 2` stopped by SIGTERM: (exit code, stderr, run folder, leftovers)."
    out = tmp_path_factory.mktemp('ddp')/'run'
    p = subprocess.Popen(['llmbook', 'train', '--preset', 'austen-tiny', '--out', str(out),
                          '--text', str(root/'text.txt'), '--quiet', '--device', 'cpu',
                          '--threads', '1', '--nproc', '2', '--steps', '5000', *TINY],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0, metrics = time.time(), out/'metrics.jsonl'
    while time.time() - t0 < 120 and p.poll() is None and not (
            metrics.exists() and len(metrics.read_text().splitlines()) > 5):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    time.sleep(1)
    left = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try: cmd = Path(f'/proc/{pid}/cmdline').read_bytes().decode(errors='replace')
        except OSError: continue
        if str(out) in cmd: left.append((pid, cmd.replace('\0', ' ')))
    return p.returncode, err, out, left


def test_sigterm_to_data_parallel_training_stops_every_rank_and_saves(sigterm_nproc2):
    code, err, out, left = sigterm_nproc2
    assert not left, left  # no rank (or torchrun) still running
    assert (out/'last'/'meta.json').exists(), err
    assert not (out/'.llmbook.lock').exists()


# exited 1 (not 143, as one process does) with torchrun's SignalException traceback
def test_sigterm_to_data_parallel_training_is_a_quiet_143(sigterm_nproc2):
    code, err, out, left = sigterm_nproc2
    assert code == 143 and 'Traceback' not in err, (code, err[-400:])


# -- a full disk at other write points: one line, and what was there before is still there
def _full(*a, **k):
    import errno
    raise OSError(errno.ENOSPC, 'No space left on device')


@pytest.mark.parametrize('force', [False, True], ids=['new', 'over an earlier export'])
def test_disk_full_during_export_hf_keeps_the_earlier_export(root, tmp_path, monkeypatch, force):
    pytest.importorskip('transformers')
    monkeypatch.setattr('llmbook.interop.save_hf_tokenizer', _full)
    if force: shutil.copytree(root/'hf', tmp_path/'hf')
    refused(tmp_path, 'export-hf', '--ckpt', root/'pre', '--out', tmp_path/'hf',
            *(['--force'] if force else []), needles=('No space left on device',),
            absent=[] if force else [tmp_path/'hf'])


@pytest.mark.parametrize('force', [False, True], ids=['new', 'over an earlier bundle'])
def test_disk_full_during_export_web_keeps_the_earlier_bundle(root, tmp_path, monkeypatch, force):
    pytest.importorskip('onnx')
    monkeypatch.setattr('llmbook.web.export_onnx', _full)
    if force: _bundle(tmp_path/'web')
    refused(tmp_path, 'export-web', root/'pre', tmp_path/'web', *(['--force'] if force else []),
            needles=('No space left on device',), absent=[] if force else [tmp_path/'web'])


def test_disk_full_saving_the_tokenizer_leaves_no_run(root, monkeypatch):
    monkeypatch.setattr('llmbook.tokenizer.BPETokenizer.save', _full)
    refused(root, 'train', '--preset', 'austen-tiny', '--out', root/'new', '--text',
            root/'text.txt', '--quiet', '--threads', 1, *TINY,
            needles=('No space left on device',), absent=[root/'new'])


def test_disk_full_logging_a_resumed_finetune_keeps_its_checkpoint(root, tmp_path, monkeypatch):
    shutil.copytree(root/'clf', tmp_path/'clf')
    last = snap(tmp_path/'clf'/'last')
    monkeypatch.setattr('llmbook.instruct._jsonl', _full)
    c, _, err = cli('finetune', 'classify', '--out', tmp_path/'clf', '--resume', '--quiet',
                    '--stop-after', 1, '--device', 'cpu', '--threads', 1)
    one_line(c, err, 1, 'No space left on device')
    assert snap(tmp_path/'clf'/'last') == last
