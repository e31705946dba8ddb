"""Instruction data, masking, ROUGE-L against rouge-score, and `finetune` runs (llmbook.instruct)."""
import json, random
from pathlib import Path
from procs import sigint_once_logged
import pytest, torch
from llmbook.instruct import *
from llmbook.checkpoint import TrainConfig
from llmbook.train import Trainer


@pytest.mark.parametrize('text,msg', [
    ('[{"instruction": "a", "output": "b"},\n  {"instruction": "a"', 'f.json, line 2'),
    ('{"instruction": "a", "output": "b"}', 'expected a JSON list'),
    ('[{"instruction": "a", "output": "b"}, ["x"]]', 'record 1: not a JSON object'),
    ('[{"instruction": "a", "output": ""}]', "record 0: missing or empty 'output'"),
    ('[{"instruction": "a", "output": "b", "input": 3}]', "'input' must be a string"),
])
def test_bad_records(tmp_path, text, msg):
    (tmp_path/'f.json').write_text(text)
    with pytest.raises(ValueError, match=msg): load_instructions(tmp_path/'f.json')


def test_template():
    p = format_prompt({'instruction': 'Add.', 'input': '1 2', 'output': '3'})
    assert p.endswith('### Instruction:\nAdd.\n\n### Input:\n1 2\n\n### Response:\n')
    assert '### Input' not in format_prompt({'instruction': 'Hi.', 'input': ''})


class Words:
    "A tokenizer stand-in: one id per character, eot 0."
    eot_id = 0
    def encode(self, t): return [1 + ord(c) % 90 for c in t]


def test_cut_and_dropped_are_reported(capsys):
    short = {'instruction': 'a', 'input': '', 'output': 'b' * 5}
    long = {'instruction': 'a', 'input': '', 'output': 'b' * 500}
    huge = {'instruction': 'a' * 500, 'input': '', 'output': 'b'}
    n_prompt = len(format_prompt(short))
    ex = encode_instructions([short, long, huge], Words(), n_prompt + 20)
    assert [len(ids) for ids, _ in ex] == [n_prompt + 6, n_prompt + 21]
    assert 'cut 1 to' in capsys.readouterr().out and True
    with pytest.raises(ValueError, match='raise max_len'):
        encode_instructions([huge], Words(), 50)


def test_masking_keeps_exactly_the_response():
    tok = Words()
    recs = [{'instruction': 'x' * k, 'input': '', 'output': 'y' * (k + 2)} for k in (1, 4, 2)]
    ex = encode_instructions(recs, tok, 400)
    x, y = collate_instructions(ex, pad_id=0)
    for i, r in enumerate(recs):
        kept = y[i][y[i] != IGNORE].tolist()
        assert kept == tok.encode(r['output']) + [tok.eot_id]
        n = len(ex[i][0]) - 1
        assert x[i, :n].tolist() == ex[i][0][:-1] and (x[i, n:] == 0).all()


def test_rouge_l_matches_rouge_score():
    rs = pytest.importorskip('rouge_score.rouge_scorer')
    scorer = rs.RougeScorer(['rougeL'])
    data = load_instructions()
    rng = random.Random(0)
    for _ in range(200):
        a, b = rng.sample(data, 2)
        pred = a['output'] if rng.random() < 0.5 else b['output'] + ' ' + a['output'][:20]
        ref = a['output']
        assert rouge_l(pred, ref) == pytest.approx(scorer.score(ref, pred)['rougeL'].fmeasure)
    assert rouge_l('', 'abc') == 0.0


def test_lcs_against_brute_force():
    from itertools import combinations
    rng = random.Random(1)
    for _ in range(50):
        a = [rng.choice('ab c') for _ in range(rng.randint(0, 7))]
        b = [rng.choice('abc') for _ in range(rng.randint(0, 7))]
        best = max((k for k in range(len(a) + 1) for s in combinations(a, k)
                    if _is_subseq(s, b)), default=0)
        assert lcs_len(a, b) == best


def _is_subseq(s, b):
    it = iter(b)
    return all(c in it for c in s)


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    "A one-block base pretrained for four steps."
    d = tmp_path_factory.mktemp('base')
    cfg = TrainConfig(n_layer=1, d_model=32, n_head=2, context_len=32, vocab_size=300,
                      bs=8, steps=4, eval_every=4, eval_batches=1, ckpt_every=4)
    text = ' '.join(r['instruction'] + ' ' + r['output'] for r in load_instructions()[:300])
    Trainer(cfg, {'t': text}, d).fit()
    return d


def test_instruct_run_resumes_exactly(base, tmp_path):
    fc = FinetuneConfig('instruct', steps=4, bs=4, max_len=400, eval_every=2, ckpt_every=2)
    a = finetune_run(base, tmp_path/'a', fc)
    finetune_run(base, tmp_path/'b', fc, stop_after=2)
    b = finetune_run(base, tmp_path/'b', fc, resume=True)
    wa, wb = (load_finetuned(tmp_path/d)[0].state_dict() for d in 'ab')
    for k in wa: torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0)
    assert a['test'] == pytest.approx(b['test'])
    log = [json.loads(l) for l in (tmp_path/'b'/'metrics.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log] == [1, 2, 3, 4]
    assert {'last', 'best', 'run.json', 'tokenizer.txt'} <= {p.name for p in (tmp_path/'a').iterdir()}


def test_lora_run_saves_and_loads(base, tmp_path):
    fc = FinetuneConfig('classify', train='lora', steps=2, bs=4, max_len=40, eval_every=2)
    run = finetune_run(base, tmp_path/'r', fc)
    m, tok, fc2, st = load_finetuned(tmp_path/'r')
    assert fc2 == fc and st['step'] == 2
    adapters = sum(p.numel() for n, p in m.named_parameters()
                   if n.endswith(('lora_A', 'lora_B')) or n.startswith('head.'))
    assert run['params']['trainable'] == adapters < run['params']['total'] / 2
    assert 0 <= run['test']['accuracy'] <= 1


def test_refusals(base, tmp_path):
    fc = FinetuneConfig('classify', steps=1, bs=4, max_len=40)
    finetune_run(base, tmp_path/'r', fc)
    with pytest.raises(FileExistsError, match='--resume'): finetune_run(base, tmp_path/'r', fc)
    with pytest.raises(ValueError, match='only --steps'):
        finetune_run(base, tmp_path/'r', FinetuneConfig('classify', steps=3, bs=8, max_len=40),
                     resume=True)
    with pytest.raises(ValueError, match='not a pretrained llmbook GPT'):
        finetune_run(tmp_path/'r', tmp_path/'s', fc)
    with pytest.raises(ValueError, match='not a fine-tuning checkpoint'): load_finetuned(base)
    with pytest.raises(ValueError, match='does not apply to instruct'):
        FinetuneConfig('instruct', train='head')
    with pytest.raises(ValueError, match="task 'summarise'"): FinetuneConfig('summarise')


def test_bad_data_file_names_file_and_line(base, tmp_path):
    (tmp_path/'sms.tsv').write_text('ham\thi\nspam\tbuy\nnope\tx\n')
    fc = FinetuneConfig('classify', steps=1, bs=2, max_len=40)
    with pytest.raises(ValueError, match="sms.tsv, line 3: unknown label 'nope'"):
        finetune_run(base, tmp_path/'r', fc, data_path=tmp_path/'sms.tsv')


def test_cli_finetune_runs_refuses_and_resumes(base, tmp_path, capsys):
    from llmbook.cli import main
    out = tmp_path/'run'
    args = ['finetune', 'classify', '--base', str(base), '--out', str(out),
            '--steps', '2', '--bs', '4', '--max-len', '40', '--quiet']
    assert main(args) == 0
    assert 'step 2/2' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='already holds a run'): main(args)
    assert main(['finetune', 'classify', '--out', str(out), '--resume', '--steps', '3',
                 '--quiet']) == 0
    run = json.loads((out/'run.json').read_text())
    assert run['step'] == 3 and run['finetune']['max_len'] == 40 and run['base'] == str(base)
    with pytest.raises(SystemExit, match='holds a classify run, not instruct'):
        main(['finetune', 'instruct', '--out', str(out), '--resume', '--quiet'])
    with pytest.raises(SystemExit, match='not a pretrained llmbook GPT'):
        main(['finetune', 'classify', '--base', str(out), '--out', str(tmp_path/'x'), '--quiet'])
    with pytest.raises(SystemExit, match='does not apply to instruct'):
        main(['finetune', 'instruct', '--base', str(base), '--out', str(tmp_path/'y'),
              '--train', 'head', '--quiet'])


def _stop_a_finetune(base, out, sig):
    "Start a real `llmbook finetune classify`, send `sig` once it has logged: (stderr, code, run, step)."
    import subprocess
    args = ['llmbook', 'finetune', 'classify', '--base', str(base), '--out', str(out),
            '--steps', '5000', '--bs', '2', '--max-len', '40', '--quiet']
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = sigint_once_logged(p, out/'metrics.jsonl', 2, sig=sig)
    run = json.loads((out/'run.json').read_text())
    return err, p.returncode, run, json.loads((out/'last'/'meta.json').read_text())['step']


def test_ctrl_c_saves_and_resumes(base, tmp_path):
    "SIGINT a real `llmbook finetune`: it saves `last`, exits 130, and --resume goes on."
    import signal, subprocess
    out = tmp_path/'int'
    err, code, run, k = _stop_a_finetune(base, out, signal.SIGINT)
    assert code == 130 and 'interrupted' in err and 'Traceback' not in err, err
    assert run['interrupted'] and run['step'] == k >= 2
    r = subprocess.run(['llmbook', 'finetune', 'classify', '--out', str(out), '--resume',
                        '--steps', str(k + 2), '--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out/'run.json').read_text())['step'] == k + 2


def test_sigterm_saves_and_exits_143(base, tmp_path):
    "SIGTERM (timeout, Docker, schedulers) a real `llmbook finetune`: saved like Ctrl-C, exit 143."
    import signal
    err, code, run, k = _stop_a_finetune(base, tmp_path/'term', signal.SIGTERM)
    assert code == 143 and 'SIGTERM' in err and 'Traceback' not in err, err
    assert run['interrupted'] and run['signal'] == 'SIGTERM' and run['step'] == k >= 2
