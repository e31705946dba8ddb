"""The model in the browser (nbs/C_web.ipynb, issue #26): the committed bundle is the
committed run, and the JavaScript module gives PyTorch's logits, greedy tokens and token
ids in Node (onnxruntime-node) and in headless Chromium (onnxruntime-web).

Node, web/node_modules (`npm ci` in web/) and Chromium are required: without them these
tests fail with the fix, they never skip."""
import json, re
from pathlib import Path
import numpy as np
import pytest
import torch
from web_harness import (ROOT, BUNDLE, WEB, missing_tools, node_check, browser_run,
                         torch_reference, widget_html)
from procs import cli, one_line

RUN = ROOT/'runs'/'austen-tiny'
PROMPTS = ['It is a truth universally acknowledged', 'Mr. Darcy said',
           'Emma Woodhouse, handsome, clever, and rich']


def need(browser=False):
    if miss := missing_tools(browser): pytest.fail('; '.join(miss))


@pytest.fixture(scope='module')
def held_out():
    "The run's held-out text, as `llmbook train` split it."
    from llmbook.train import run_texts
    from llmbook.data import train_val_split
    texts = run_texts(None)[0]
    return train_val_split(texts, json.loads((RUN/'run.json').read_text())['config']['val_frac'])[1]


@pytest.fixture(scope='module')
def greedy_ref():
    "PyTorch's 50 greedy tokens after the manifest's prompt."
    from llmbook.generate import generate
    model, tok, man = torch_reference()
    ids = tok.encode(man['checks']['prompt'])
    return ids, generate(model, torch.tensor([ids]), 50, temperature=0)[0, len(ids):].tolist()


def test_bundle_is_small():
    files = [*BUNDLE.iterdir(), ROOT/'nbs'/'web'/'llmbook-web.js']
    assert sum(f.stat().st_size for f in files) <= 10e6


def test_manifest_is_the_committed_run():
    "The bundle names the committed run: its config, log, tokenizer, data, files."
    from llmbook.core import sha256sum
    man = json.loads((BUNDLE/'manifest.json').read_text())
    run = json.loads((RUN/'run.json').read_text())
    last = [json.loads(l) for l in (RUN/'metrics.jsonl').read_text().splitlines()][-1]
    r = man['run']
    assert r['name'] == 'austen-tiny'
    # the rebuild's config has the fields added since, at their defaults
    assert {k: r['config'][k] for k in run['config']} == run['config']
    assert set(r['config']) - set(run['config']) <= {'time_budget', 'optimizer', 'muon_lr'}
    assert (r['best_step'], r['best_val_loss']) == (run['best_step'], run['best_val_loss'])
    assert last['val_loss'] == run['best_val_loss']
    assert r['tokenizer_sha256'] == sha256sum(RUN/'tokenizer.txt')
    assert r['data_digest'] == json.loads((RUN/'data.json').read_text())['digest']
    assert man['files'] == {f: sha256sum(BUNDLE/f) for f in ('model.onnx', 'tokenizer.json')}
    # the graph's own held-out loss, measured at export, is the run's logged one
    assert abs(man['checks']['held_out_loss'] - run['best_val_loss']) < 1e-5


def test_bundle_scores_the_logged_loss_again(held_out):
    "onnxruntime on the run's fixed held-out windows gives the loss in its log."
    from llmbook.train import _encode
    from llmbook.web import held_out_loss, ort_session
    model, tok, man = torch_reference()
    data, cfg = json.loads((RUN/'data.json').read_text()), json.loads((RUN/'run.json').read_text())
    val = np.array(_encode(tok, held_out), np.int64)
    assert len(val) == data['val_tokens']
    c = cfg['config']
    loss = held_out_loss(ort_session(BUNDLE/'model.onnx'), model.cfg, val, c['bs'] // c['grad_accum'],
                         c['eval_batches'])
    assert abs(loss - cfg['best_val_loss']) < 1e-5, (loss, cfg['best_val_loss'])


def test_tokenizer_json_is_the_runs_tokenizer():
    _, tok, _ = torch_reference()
    t = json.loads((BUNDLE/'tokenizer.json').read_text())
    assert [tuple(m) for m in t['merges']] == tok.merges
    assert bytes(t['bytes']) == tok.byte_order and t['specials'] == tok.specials


def test_node_matches_pytorch(held_out, greedy_ref):
    "In Node: logits to 1e-4 on 3 prompts, 50 greedy tokens, ids of a held-out passage."
    need()
    model, tok, man = torch_reference()
    start = len(held_out) // 2
    passage = held_out[start:start + 3000] + " it's  \t\n 1,234 £5 -- café «Ångström» 'll \n\n"
    ids, ref = greedy_ref
    r = node_check(dict(prompts=PROMPTS, greedy=dict(prompt=man['checks']['prompt'], n=50),
                        passage=passage))
    for p, got in zip(PROMPTS, r['logits']):
        assert got['ids'] == tok.encode(p)
        with torch.no_grad(): want = model(torch.tensor([got['ids']]))[0].numpy()
        diff = np.abs(np.array(got['logits']).reshape(want.shape) - want).max()
        assert diff < 1e-4, (p, diff)
    assert r['greedy'] == ref == man['checks']['greedy_50']
    assert r['passage'] == tok.encode(passage) and r['decoded'] == passage


def test_chromium_matches_pytorch(greedy_ref):
    "The book page's widget in headless Chromium writes PyTorch's 50 greedy tokens."
    need(browser=True)
    _, tok, man = torch_reference()
    ids, ref = greedy_ref
    r = browser_run(dict(prompt=man['checks']['prompt'], n=50, temperature=0))
    assert r['errors'] == []
    assert r['runs'][0]['ids'] == ref
    assert r['runs'][0]['text'] == tok.decode(ids + ref)


def test_page_loads_the_pinned_onnxruntime_web():
    "The CDN version in the widget is the one package.json pins and the tests run."
    pin = json.loads((WEB/'package.json').read_text())['dependencies']['onnxruntime-web']
    lock = json.loads((WEB/'package-lock.json').read_text())['packages']
    assert lock['node_modules/onnxruntime-web']['version'] == pin
    assert re.search(r'data-ort-cdn="https://cdn\.jsdelivr\.net/npm/onnxruntime-web@([\d.]+)/dist/"',
                     widget_html()).group(1) == pin
    assert 'data-ort="web/ort/"' in widget_html()   # the book's own copy comes first
    assert 'web/austen-tiny/' in widget_html() and "from './web/llmbook-web.js'" in widget_html()


def test_the_build_copies_onnxruntime_web_beside_the_book(tmp_path):
    "Quarto's pre-render step copies the pinned onnxruntime-web into web/ort/ of the rendered project."
    import subprocess, sys, yaml
    q = yaml.safe_load((ROOT/'_quarto.yml').read_text())['project']
    assert q['pre-render'] == 'sh web/copy-ort.sh' and 'web/ort/*' in q['resources']
    proj = tmp_path/'_proc'; proj.mkdir()
    (tmp_path/'web').symlink_to(WEB)   # _proc/../web is the repository's web/
    r = subprocess.run(['sh', ROOT/'nbs'/'web'/'copy-ort.sh'], cwd=proj,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == '', r.stderr
    dist = WEB/'node_modules'/'onnxruntime-web'/'dist'
    for f in ('ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'):
        assert (proj/'web'/'ort'/f).read_bytes() == (dist/f).read_bytes()


def test_quarto_copies_the_bundle():
    import yaml
    res = yaml.safe_load((ROOT/'_quarto.yml').read_text())['project']['resources']
    need_files = ['web/llmbook-web.js', 'web/austen-tiny/model.onnx', 'web/austen-tiny/tokenizer.json',
                  'web/austen-tiny/manifest.json']
    from fnmatch import fnmatch
    for f in need_files: assert any(fnmatch(f, g) for g in res), f
    assert (ROOT/'nbs'/'web'/'widget.png').is_file()
    # nbdev_docs renders from a _proc/ copy of nbs/, which holds nbs/web/ only if recursive
    import configparser
    ini = configparser.ConfigParser(); ini.read(ROOT/'settings.ini')
    assert ini['DEFAULT'].getboolean('recursive')


# ---- bad input: one line, nothing written ----

def fails(*argv, needle):
    code, out, err = cli('export-web', *argv)
    one_line(code, err, 1, needle)


def test_export_web_missing_run(tmp_path):
    fails(tmp_path/'nope', tmp_path/'out', needle='no checkpoint')
    assert not (tmp_path/'out').exists()


def test_export_web_damaged_run(tmp_path):
    ck = tmp_path/'run'/'best'; ck.mkdir(parents=True)
    (ck/'meta.json').write_text('{"format": "llmbook-ckpt 1", "config": {}, "files": {"model.safetensors": "0"}}')
    fails(tmp_path/'run', tmp_path/'out', needle='damaged')
    assert not (tmp_path/'out').exists()


def test_export_web_refuses_a_foreign_out(tmp_path):
    (tmp_path/'out').mkdir(); (tmp_path/'out'/'notes.txt').write_text('mine')
    fails(tmp_path/'nope', tmp_path/'out', needle='not a web bundle')
    assert (tmp_path/'out'/'notes.txt').read_text() == 'mine'


def test_export_web_writes_a_bundle_atomically(tmp_path):
    "A tiny checkpoint exports; a second export needs --force; no temporary folder is left."
    from test_interop import make_ckpt
    from llmbook.data import load_austen
    run_dir = make_ckpt(tmp_path, list(load_austen().values()))
    code, out, err = cli('export-web', run_dir, tmp_path/'b')
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path/'b').iterdir()) == ['manifest.json', 'model.onnx', 'tokenizer.json']
    before = (tmp_path/'b'/'model.onnx').read_bytes()
    fails(run_dir, tmp_path/'b', needle='--force')
    assert (tmp_path/'b'/'model.onnx').read_bytes() == before
    assert cli('export-web', run_dir, tmp_path/'b', '--force')[0] == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
