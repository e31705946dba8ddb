"""Bad input, the UCI download path and the classifier's invariants (llmbook.classify)."""
import json, zipfile
from pathlib import Path
import pytest, torch
from llmbook.core import sha256sum, data_dirs
from llmbook.model import GPT, GPTConfig
from llmbook.classify import *

SMS = next((d/SMS_FILE for d in data_dirs() if (d/SMS_FILE).is_file()), Path('missing'))
TINY = GPTConfig(vocab_size=64, context_len=16, d_model=32, n_layer=2, n_head=4, n_kv_head=2)


def _zip(path, name, data):
    with zipfile.ZipFile(path, 'w') as z: z.writestr(name, data)
    return path.as_uri()


@pytest.mark.skipif(not SMS.exists(), reason=f'needs {SMS_FILE} in LLMBOOK_DATA or the cache')
def test_download_extracts_and_checks(tmp_path):
    url = _zip(tmp_path/'sms.zip', 'SMSSpamCollection', SMS.read_bytes())
    dest = download_sms_spam(url, tmp_path/'out'/'SMSSpamCollection')
    assert sha256sum(dest) == SMS_SHA256
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['SMSSpamCollection']


def test_download_refuses_changed_archive(tmp_path):
    url = _zip(tmp_path/'sms.zip', 'SMSSpamCollection', b'ham\thello\n')
    with pytest.raises(ValueError, match='SHA-256'):
        download_sms_spam(url, tmp_path/'out'/'SMSSpamCollection')
    assert not (tmp_path/'out'/'SMSSpamCollection').exists()


def test_download_failure_is_clear(tmp_path):
    with pytest.raises(ConnectionError, match='could not download'):
        download_sms_spam((tmp_path/'missing.zip').as_uri(), tmp_path/'x')


@pytest.mark.parametrize('text,msg', [
    ('ham\thi\nspam\ta\tb\n', 'f.tsv, line 2: malformed row'),
    ('ham\thi\nham\thi\nno tab\n', 'f.tsv, line 3: missing text'),
    ('ham\thi\nspam\t\n', 'f.tsv, line 2: missing text'),
    ('ham\thi\n\nham\tx\n', 'f.tsv, line 2: missing text'),
    ('ham\thi\nHam\tx\n', "f.tsv, line 2: unknown label 'Ham'"),
])
def test_bad_rows(tmp_path, text, msg):
    (tmp_path/'f.tsv').write_text(text)
    with pytest.raises(ValueError, match=msg): read_sms(tmp_path/'f.tsv')


def test_quotes_are_text(tmp_path):
    (tmp_path/'f.tsv').write_text('ham\t"quoted\nspam\tsay "hi"\n')
    df = read_sms(tmp_path/'f.tsv')
    assert df.text.tolist() == ['"quoted', 'say "hi"'] and df.y.tolist() == [0, 1]


def test_split_is_balanced_disjoint_seeded():
    df = read_sms()
    tr, va, te = balanced_split(df, seed=1)
    for d in (tr, va, te): assert abs(d.y.mean() - 0.5) < 0.1
    assert not (set(tr.text) & set(te.text)) and not (set(tr.text) & set(va.text))
    assert len(tr) + len(va) + len(te) == 2 * df.drop_duplicates('text').y.sum()
    assert balanced_split(df, seed=1)[2].text.tolist() == te.text.tolist()
    assert balanced_split(df, seed=2)[2].text.tolist() != te.text.tolist()


def test_metrics_match_counting():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        y, p = torch.randint(2, (50,), generator=g), torch.randint(2, (50,), generator=g)
        m = classification_metrics(y, p)
        tp = int(((y == 1) & (p == 1)).sum()); fp = int(((y == 0) & (p == 1)).sum())
        fn = int(((y == 1) & (p == 0)).sum())
        assert m['precision'] == pytest.approx(tp / (tp + fp))
        assert m['recall'] == pytest.approx(tp / (tp + fn))
        assert m['accuracy'] == pytest.approx((y == p).float().mean().item())
        assert confusion_matrix(y, p).sum() == 50
    assert classification_metrics(torch.tensor([0, 0]), torch.tensor([0, 0]))['f1'] == 0.0


class Chars:
    "A tokenizer stand-in: one id per character."
    eot_id = 0
    def encode(self, t): return [1 + ord(c) % 60 for c in t]


def test_truncation_is_counted(capsys):
    ids, n = encode_texts(['a' * 10, 'b' * 3, 'c' * 8], Chars(), 8)
    assert n == 1 and [len(x) for x in ids] == [8, 3, 8]
    assert 'truncated 1 of 3 texts to 8 tokens' in capsys.readouterr().out
    with pytest.raises(ValueError, match='no tokens'): encode_texts([''], Chars(), 8)


@pytest.mark.parametrize('pool', ['last', 'mean'])
def test_padding_does_not_change_scores(pool):
    torch.manual_seed(0)
    clf = GPTClassifier(GPT(TINY), pool=pool).eval()
    seqs = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13]]
    idx, lengths = pad_batch(seqs, pad_id=63)
    with torch.no_grad():
        batch = clf(idx, lengths)
        for i, s in enumerate(seqs):
            torch.testing.assert_close(batch[i], clf(torch.tensor([s]))[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="'last' or 'mean'"): GPTClassifier(GPT(TINY), pool='max')


def test_set_trainable_counts():
    clf = GPTClassifier(GPT(TINY))
    n_head = TINY.d_model * 2 + 2
    assert set_trainable(clf, 'head') == n_head
    last = sum(p.numel() for p in clf.gpt.blocks[-1].parameters()) + TINY.d_model
    assert set_trainable(clf, 'last') == n_head + last
    assert set_trainable(clf, 'all') == sum(p.numel() for p in clf.parameters())
    with pytest.raises(ValueError, match='head'): set_trainable(clf, 'middle')


def test_resumable_batches():
    a = [batch_indices(50, 8, s, seed=4) for s in range(12)]
    assert all((x == batch_indices(50, 8, s, seed=4)).all() for s, x in enumerate(a))
    assert len(set(torch.cat(a[:6]).tolist())) == 48  # one epoch: no repeats


def test_base_of_another_architecture(tmp_path):
    (tmp_path/'hf').mkdir(); (tmp_path/'hf'/'config.json').write_text('{}')
    with pytest.raises(ValueError, match='Hugging Face'): load_base(tmp_path/'hf')
    with pytest.raises(FileNotFoundError, match='no checkpoint'): load_base(tmp_path)
    gpt2 = GPT(GPTConfig(vocab_size=64, context_len=16, d_model=32, n_layer=1,
                         n_head=4, style='gpt2'))
    with pytest.raises(ValueError, match='cannot be extended'): with_context(gpt2, 32)
    assert with_context(gpt2, 16).cfg.context_len == 16


@pytest.mark.filterwarnings("ignore:text too short")
def test_mismatched_weights_are_refused(tmp_path):
    from llmbook.checkpoint import TrainConfig, save_checkpoint
    from llmbook.tokenizer import BPETokenizer
    tok = BPETokenizer.train('the cat sat on the mat. ' * 20, 300)
    tok.save(tmp_path/'tok.txt')
    saved = TrainConfig(n_layer=1, d_model=32, n_head=2, context_len=16, vocab_size=300)
    other = GPT(GPTConfig(vocab_size=300, context_len=16, d_model=32, n_layer=2, n_head=2))
    save_checkpoint(tmp_path/'run'/'last', other, saved, tmp_path/'tok.txt')
    with pytest.raises(ValueError, match='does not match its meta.json'):  # before building it
        load_base(tmp_path/'run')
