"""llmbook.interop and `llmbook export-hf`: transformers loads the folder offline,
same token ids as ours on Austen, same greedy text as `llmbook generate`."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch

pytest.importorskip('transformers')
from llmbook.data import load_austen
from llmbook.tokenizer import BPETokenizer
from llmbook.model import GPT
from llmbook.hf import randomize_
from llmbook.checkpoint import TrainConfig, model_config, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PROMPT = 'It is a truth universally acknowledged'
OFFLINE = os.environ | {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}


def run(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                          env=OFFLINE, **kw)


@pytest.fixture(scope='module')
def books():
    return list(load_austen().values())


def make_ckpt(path, books, style='llama'):
    tok = BPETokenizer.train(books[0][:30_000], 320)
    tok.save(path/'tokenizer.txt')
    cfg = TrainConfig(style=style, n_layer=2, n_head=4, n_kv_head=2 if style == 'llama' else None,
                      d_model=32, context_len=64)
    g = torch.Generator().manual_seed(0)
    model = randomize_(GPT(model_config(cfg, tok.vocab_size)), std=0.1, generator=g)
    save_checkpoint(path/'run'/'best', model, cfg, path/'tokenizer.txt')
    return path/'run'


@pytest.fixture(scope='module')
def exported(tmp_path_factory, books):
    tmp = tmp_path_factory.mktemp('interop')
    run_dir = make_ckpt(tmp, books)
    r = run('llmbook', 'export-hf', '--ckpt', str(run_dir), '--out', str(tmp/'hf'))
    assert r.returncode == 0, r.stderr
    return run_dir, tmp/'hf'


LOAD = r'''
import json, sys, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
transformers.logging.set_verbosity_error()
out, text, prompt, n = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], int(sys.argv[4])
model = AutoModelForCausalLM.from_pretrained(out).eval()
tok = AutoTokenizer.from_pretrained(out)
x = tok(prompt, return_tensors='pt')
y = model.generate(**x, max_new_tokens=n, do_sample=False)
print(json.dumps(dict(model=type(model).__name__, ids=tok(text)['input_ids'],
                      eos=tok.eos_token_id, text=tok.decode(y[0]))))
'''


def test_folder_layout(exported):
    names = {f.name for f in exported[1].iterdir()}
    assert {'config.json', 'model.safetensors', 'tokenizer.json',
            'tokenizer_config.json', 'special_tokens_map.json'} <= names
    assert json.loads((exported[1]/'config.json').read_text())['model_type'] == 'llama'


def test_transformers_loads_offline_same_ids_same_greedy_text(exported, books, tmp_path):
    run_dir, hf = exported
    text = tmp_path/'text.txt'
    text.write_text(books[2][:40_000])  # a novel the tokenizer was not trained on
    n = 24
    r = run(sys.executable, '-c', LOAD, str(hf), str(text), PROMPT, str(n))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got['model'] == 'LlamaForCausalLM'
    tok = BPETokenizer.load(run_dir/'best'/'tokenizer.txt')
    assert got['ids'] == tok.encode(text.read_text())
    assert got['eos'] == tok.eot_id
    g = run('llmbook', 'generate', '--ckpt', str(run_dir), '--prompt', PROMPT,
            '--max-new-tokens', str(n), '--temperature', '0', '--top-k', '0')
    assert g.returncode == 0, g.stderr
    assert got['text'] == g.stdout.removesuffix('\n')
    assert len(tok.encode(got['text'])) >= n  # it did generate


def test_existing_out_is_refused_in_one_line_then_forced(exported):
    run_dir, hf = exported
    r = run('llmbook', 'export-hf', '--ckpt', str(run_dir), '--out', str(hf))
    assert r.returncode == 1
    assert r.stderr.strip().count('\n') == 0 and '--force' in r.stderr
    r = run('llmbook', 'export-hf', '--ckpt', str(run_dir), '--out', str(hf), '--force')
    assert r.returncode == 0, r.stderr


def test_missing_checkpoint_is_one_line(tmp_path):
    r = run('llmbook', 'export-hf', '--ckpt', str(tmp_path/'nope'), '--out', str(tmp_path/'hf'))
    assert r.returncode == 1
    assert r.stderr.strip().count('\n') == 0 and 'no checkpoint' in r.stderr


def test_gpt2_style_exports_as_gpt2(tmp_path, books):
    from transformers import AutoModelForCausalLM
    from llmbook.interop import export_checkpoint
    from llmbook.checkpoint import load_checkpoint
    run_dir = make_ckpt(tmp_path, books, style='gpt2')
    out = export_checkpoint(run_dir, tmp_path/'hf')
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == 'GPT2LMHeadModel'
    model = load_checkpoint(run_dir, 'best')[0].eval()
    idx = torch.randint(0, model.cfg.vocab_size, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx), atol=1e-4, rtol=0)


def test_other_pretokenizer_pattern_is_refused(books):
    from llmbook.interop import hf_tokenizer
    tok = BPETokenizer.train(books[0][:5_000], 270, pattern=r'\S+|\s+')
    with pytest.raises(ValueError, match="GPT-2's regex"):
        hf_tokenizer(tok)
