"""The console script, the generated README and CLI reference, and packaging."""
import configparser, json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def llmbook(*args, **kw):
    return subprocess.run(['llmbook', *args], capture_output=True, text=True, cwd=kw.pop('cwd', ROOT), **kw)


def test_help_lists_commands():
    r = llmbook('--help')
    assert r.returncode == 0
    for cmd in ('env', 'readme'): assert cmd in r.stdout


def test_no_command_prints_help_and_fails():
    r = llmbook()
    assert r.returncode == 2 and 'usage: llmbook' in r.stdout


def test_unknown_command_is_one_clear_line():
    r = llmbook('frobnicate')
    assert r.returncode == 2 and "invalid choice: 'frobnicate'" in r.stderr


def test_env_reports_versions_and_data(tmp_path):
    (tmp_path/'gpt2').mkdir(); (tmp_path/'gpt2'/'vocab.bpe').write_text('x')
    (tmp_path/'austen').mkdir()  # an empty folder is not a data set
    env = os.environ | {'LLMBOOK_DATA': str(tmp_path)}
    r = llmbook('env', '--json', env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info['device'] == 'cpu' or info['device'].startswith(('cuda', 'mps'))
    assert info['data: gpt2'] == 'present' and info['data: austen'] == 'missing'
    assert info['data dirs'].startswith(str(tmp_path))


def test_env_bad_device_is_one_line():
    r = llmbook('env', env=os.environ | {'LLMBOOK_DEVICE': 'tpu'})
    assert r.returncode == 1
    assert r.stderr.strip().count('\n') == 0 and 'not available' in r.stderr


def test_readme_is_fresh():
    r = llmbook('readme', '--check')
    assert r.returncode == 0, r.stderr


def test_stale_readme_is_caught(tmp_path):
    stale = tmp_path/'README.md'
    stale.write_text((ROOT/'README.md').read_text() + '\nedited by hand\n')
    r = llmbook('readme', '--check', '--out', str(stale))
    assert r.returncode == 1 and 'stale' in r.stderr


def test_readme_gives_the_ci_test_command():
    readme = (ROOT/'README.md').read_text().splitlines()
    cmds = [l for l in readme if l.startswith('nbdev_test')]
    assert len(cmds) == 1 and 'pytest' in cmds[0]
    assert "grep -m1 '^nbdev_test' README.md" in (ROOT/'.ci'/'run').read_text()


def test_cli_reference_in_the_book_is_current():
    from llmbook.cli import cli_reference
    nb = json.loads((ROOT/'nbs'/'D_cli.ipynb').read_text())
    cell = next(c for c in nb['cells'] if ''.join(c['source']).strip().endswith('print(cli_reference())'))
    stored = ''.join(cell['outputs'][0]['text'])
    assert stored.strip() == cli_reference().strip(), 're-run nbs/D_cli.ipynb'


def test_core_imports_without_plotting_or_notebook_libraries():
    code = ('import sys, llmbook.core, llmbook.cli; '
            'bad = [m for m in ("matplotlib", "IPython", "transformers", "peft") if m in sys.modules]; '
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_packaging_pins():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT/'settings.ini')
    d = cfg['DEFAULT']
    dev = d['dev_requirements'].split()
    for pin in ('nbdev==2.4.14', 'execnb<0.2', 'fastcore>=1.12.3,<1.13'): assert pin in dev
    runtime = d['requirements'].split()
    assert not any(p.startswith(('transformers', 'tokenizers', 'peft', 'nbdev')) for p in runtime)
    from packaging.specifiers import SpecifierSet
    torch_req = next(p for p in runtime if p.startswith('torch'))
    assert '2.13.0' in SpecifierSet(torch_req[len('torch'):])


def test_readme_and_ci_install_torch_the_same_cpu_way():
    readme = (ROOT/'README.md').read_text()
    ci = (ROOT/'.ci'/'run').read_text()
    cpu = '--index-url https://download.pytorch.org/whl/cpu'
    assert f'pip install torch==2.13.0 {cpu}' in readme
    assert 'torch==2.13.0' in ci and cpu in ci
    assert 'bash tests/smoke_wheel.sh' in ci


def test_hf_extra_names_transformers_and_tokenizers():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT/'settings.ini')
    hf = cfg['DEFAULT']['hf_requirements'].split()
    assert any(p.startswith('transformers') for p in hf) and 'tokenizers' in hf
    assert "'hf': hf_requirements" in (ROOT/'setup.py').read_text()


def test_classifiers_say_what_settings_ini_says_and_the_licence_is_spdx():
    r = subprocess.run([sys.executable, 'setup.py', '--classifiers'], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'Development Status :: 3 - Alpha' in r.stdout and 'License ::' not in r.stdout
    assert "license_expression=lic" in (ROOT/'setup.py').read_text()


def test_readme_test_section_names_the_data_and_the_threads():
    readme = (ROOT/'README.md').read_text()
    tests = readme[readme.index('Run every test'):readme.index('## Working on the book')]
    assert 'LLMBOOK_DATA' in tests and 'OMP_NUM_THREADS=1' in tests
    assert '--threads 1' in readme and 'pip install -e .' in readme


def test_env_shows_the_load_and_the_threads():
    r = llmbook('env', '--json')
    info = json.loads(r.stdout)
    assert 'load (1, 5, 15 min)' in info and 'torch threads' in info


def test_help_repeats_the_librarys_defaults():
    "Where the CLI's help writes out a default the library owns, it is the library's value."
    import argparse, inspect
    from llmbook.cli import make_parser
    from llmbook.train import PRESETS, ABLATION, ablate
    from llmbook.instruct import TASK_DEFAULTS
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    opt = lambda cmd, name: next(a for a in sub.choices[cmd]._actions if name in a.option_strings)
    for name in PRESETS: assert name in opt('train', '--preset').help, name
    assert opt('speedrun', '--preset').default in PRESETS
    assert f'(default {ABLATION.steps})' in opt('ablate', '--steps').help
    assert tuple(opt('ablate', '--seeds').default) == inspect.signature(ablate).parameters['seeds'].default
    import re
    full, lora = map(float, re.search(r'default ([\d.e-]+); lora ([\d.e-]+)',
                                      opt('finetune', '--lr').help).groups())
    assert {d['lr'] for d in TASK_DEFAULTS.values()} == {full} and lora == 5 * full
