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
    from llmbook.train import TrainConfig
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
