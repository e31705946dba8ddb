"""llmbook.tokenizer: parity with tiktoken (whole Austen corpus, GPT-2 merges,
arbitrary Unicode), round trips, the file format and bad input."""
import warnings
import pytest
import tiktoken
from hypothesis import given, settings, strategies as st
from tiktoken_ext.openai_public import r50k_pat_str
from llmbook.data import load_austen, train_val_split
from llmbook.tokenizer import *

EOT = '<|endoftext|>'


@pytest.fixture(scope='module')
def corpus():
    return '\n\n'.join(load_austen().values())


@pytest.fixture(scope='module')
def tok():
    "A 4096-token BPE trained on the Austen training split."
    train, _ = train_val_split(load_austen())
    return BPETokenizer.train(train, 4096)


@pytest.fixture(scope='module')
def small():
    "A small BPE, quick to train, for property tests."
    train, _ = train_val_split(load_austen())
    return BPETokenizer.train(train[:100_000], 600)


@pytest.fixture(scope='module')
def small_enc(small):
    return small.to_tiktoken()


@pytest.fixture(scope='module')
def gpt2():
    return gpt2_tokenizer(), gpt2_encoding()


# --- parity with tiktoken --------------------------------------------------

def test_to_tiktoken_matches_on_whole_corpus(tok, corpus):
    ours = tok.encode(corpus)
    assert ours == tok.to_tiktoken().encode(corpus)
    assert tok.decode(ours) == corpus


def test_gpt2_matches_tiktoken_on_whole_corpus(gpt2, corpus):
    g2, enc = gpt2
    assert g2.encode(corpus) == enc.encode(corpus)


def test_gpt2_encoding_is_tiktokens_gpt2(gpt2):
    g2, enc = gpt2
    assert enc.n_vocab == g2.vocab_size == 50257
    assert enc.eot_token == g2.eot_id == 50256
    assert GPT2_PATTERN == r50k_pat_str
    # GPT-2's published ids for a few tokens (encoder.json)
    assert g2.encode('Hello world') == [15496, 995]
    assert g2.encode(' the') == [262]


def test_gpt2_vocab_equals_tiktoken_ranks(gpt2):
    g2, enc = gpt2
    assert {t: i for i, t in enumerate(g2.vocab)} == enc._mergeable_ranks


@settings(max_examples=400, deadline=None)
@given(s=st.text())
def test_gpt2_parity_on_arbitrary_unicode(gpt2, s):
    g2, enc = gpt2
    assert g2.encode_ordinary(s) == enc.encode_ordinary(s)


@settings(max_examples=200, deadline=None)
@given(s=st.text(alphabet=st.sampled_from(list(" \n\t\r\u00a0é’日🤗ab1'.,"))))
def test_gpt2_parity_on_whitespace_heavy_text(gpt2, s):
    g2, enc = gpt2
    assert g2.encode_ordinary(s) == enc.encode_ordinary(s)


@settings(max_examples=200, deadline=None)
@given(s=st.text())
def test_own_tokenizer_parity_on_arbitrary_unicode(small, small_enc, s):
    assert small.encode_ordinary(s) == small_enc.encode_ordinary(s)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.text(max_size=20), max_size=5))
def test_specials_match_tiktoken(small, small_enc, parts):
    s = EOT.join(p.replace(EOT, '') for p in parts)
    for allowed in ('all', {EOT}):
        assert small.encode(s, allowed_special=allowed) == small_enc.encode(
            s, allowed_special=allowed)


# --- round trips -------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(s=st.text())
def test_roundtrip_arbitrary_unicode(small, gpt2, s):
    assert small.decode(small.encode_ordinary(s)) == s
    assert gpt2[0].decode(gpt2[0].encode_ordinary(s)) == s


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.integers(0, 599), max_size=30))
def test_decode_any_ids_never_crashes(small, small_enc, ids):
    assert small.decode(ids) == small_enc.decode(ids)  # both use '\ufffd'
    assert small.decode_bytes(ids) == small_enc.decode_bytes(ids)


def test_decode_split_utf8(gpt2):
    g2, enc = gpt2
    ids = g2.encode('🤗')
    assert len(ids) > 1
    assert g2.decode(ids[:1]) == enc.decode(ids[:1]) == '\ufffd'
    with pytest.raises(UnicodeDecodeError):
        g2.decode(ids[:1], errors='strict')


def test_save_load_roundtrip(small, tmp_path):
    small.save(tmp_path/'t.bpe')
    t = BPETokenizer.load(tmp_path/'t.bpe')
    assert (t.merges, t.specials, t.pattern, t.byte_order) == (
        small.merges, small.specials, small.pattern, small.byte_order)
    s = 'Emma Woodhouse, handsome, clever, and rich' + EOT
    assert t.encode(s, allowed_special='all') == small.encode(
        s, allowed_special='all')


def test_save_load_gpt2(gpt2, tmp_path):
    g2, enc = gpt2
    g2.save(tmp_path/'gpt2.bpe')
    t = BPETokenizer.load(tmp_path/'gpt2.bpe')
    s = 'Mr. Darcy’s 10,000 a year 🤗'
    assert t.encode(s) == enc.encode(s)


def test_char_tokenizer_roundtrip():
    t = CharTokenizer.train('hello world')
    assert t.vocab_size == 8
    assert t.decode(t.encode('low hell')) == 'low hell'


# --- training ----------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(st.text(alphabet='abc d\n', max_size=200), st.integers(0, 30))
def test_fast_trainer_equals_naive(text, n):
    counts = chunk_counts(text)
    assert bpe_merges(counts, n) == bpe_merges_naive(counts, n)


def test_fast_trainer_equals_naive_on_austen(corpus):
    counts = chunk_counts(corpus[:30_000])
    assert bpe_merges(counts, 300) == bpe_merges_naive(counts, 300)


def test_specials_do_not_take_part_in_training():
    text = ('ab ' * 50 + EOT) * 20
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # too short for 43 merges: fine here
        t = BPETokenizer.train(text, 300)
    assert all(b'<|' not in v for v in t.vocab)
    assert t.eot_id == t.vocab_size - 1


def test_vocab_size_and_ids(tok):
    assert tok.vocab_size == 4096 == len(tok.vocab) + 1
    assert tok.eot_id == 4095
    assert tok.to_tiktoken().n_vocab == 4096


def test_short_text_warns_and_shrinks():
    with pytest.warns(UserWarning, match='text too short'):
        t = BPETokenizer.train('ab', 400)
    assert t.vocab_size == 256 + 1 + 1
    assert t.encode('ab') == [256]


def test_training_is_deterministic(corpus):
    a = BPETokenizer.train(corpus[:50_000], 500)
    b = BPETokenizer.train(corpus[:50_000], 500)
    assert a.merges == b.merges


# --- bad input -----------------------------------------------------------------

def test_vocab_too_small():
    with pytest.raises(ValueError, match='too small.*at least 257'):
        BPETokenizer.train('hello', 256)
    with pytest.raises(ValueError, match='at least 258'):
        BPETokenizer.train('hello', 257, special_tokens=(EOT, '<|pad|>'))


def test_empty_corpus():
    with pytest.raises(ValueError, match='empty'):
        BPETokenizer.train('', 300)
    with pytest.raises(ValueError, match='empty'):
        CharTokenizer.train('')


def test_disallowed_special(small):
    s = f'one{EOT}two'
    with pytest.raises(ValueError, match='allowed_special'):
        small.encode(s)
    with pytest.raises(ValueError, match='unknown special'):
        small.encode(s, allowed_special={'<|nope|>'})
    assert small.encode(s, allowed_special={EOT}).count(small.eot_id) == 1
    assert small.eot_id not in small.encode_ordinary(s)
    with pytest.raises(ValueError, match='disallowed special'):
        small.to_tiktoken().encode(s)  # tiktoken refuses it too


def test_ids_out_of_range(small):
    for bad in ([600], [-1], [0, 10_000]):
        with pytest.raises(ValueError, match='out of range'):
            small.decode(bad)
    with pytest.raises(ValueError, match='out of range'):
        CharTokenizer.train('ab').decode([2])


def test_unknown_character():
    with pytest.raises(ValueError, match='not in the vocabulary'):
        CharTokenizer.train('ab').encode('abc')


def test_bad_constructor_args():
    with pytest.raises(ValueError, match='byte_order'):
        BPETokenizer([], byte_order=bytes(256))
    with pytest.raises(ValueError, match='not yet made'):
        BPETokenizer([(1, 2), (300, 3)])
    with pytest.raises(ValueError, match='follow the merges'):
        BPETokenizer([(1, 2)], specials={EOT: 300})


def test_no_eot():
    t = BPETokenizer.train('hello hello', 260, special_tokens=())
    with pytest.raises(ValueError, match='no <|endoftext|>'):
        t.eot_id


@pytest.fixture
def saved(small, tmp_path):
    small.save(tmp_path/'t.bpe')
    return tmp_path/'t.bpe'


def test_truncated_file_fails_everywhere(saved):
    data = saved.read_bytes()
    lines = data.split(b'\n')
    for k in range(len(lines) - 1):  # keep the first k lines only
        saved.write_bytes(b'\n'.join(lines[:k]))
        with pytest.raises(ValueError, match='not a valid'):
            BPETokenizer.load(saved)
    for cut in (1, 7, len(data) // 3, len(data) - 5):
        saved.write_bytes(data[:cut])
        with pytest.raises(ValueError, match='not a valid'):
            BPETokenizer.load(saved)


@pytest.mark.parametrize('old,new,msg', [
    ('llmbook-bpe 1', 'llmbook-bpe 2', 'llmbook-bpe 1'),
    ('bytes 00', 'bytes zz', 'line 3'),
    ('bytes 0001', 'bytes 0000', 'byte_order'),
    ('merges ', 'merjes ', "'merges'"),
    ('\n256 ', '\n9999 ', 'not yet made'),
    ('\n256 ', '\nx ', 'cannot parse'),
    ('specials 1', 'specials 2', 'not a valid'),
    ('\nend', '\nfin', "'end'"),
])
def test_corrupt_file(saved, old, new, msg):
    saved.write_text(saved.read_text().replace(old, new, 1))
    with pytest.raises(ValueError, match=msg):
        BPETokenizer.load(saved)


def test_binary_file(tmp_path):
    (tmp_path/'x.bpe').write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match='not UTF-8|not a valid'):
        BPETokenizer.load(tmp_path/'x.bpe')


@pytest.mark.parametrize('s', ['\ud800', 'ab\udfffcd', 'x \ud83d y'])
def test_lone_surrogates_like_tiktoken(small, small_enc, gpt2, s):
    assert small.encode(s) == small_enc.encode(s)
    assert gpt2[0].encode(s) == gpt2[1].encode(s)
    assert '\ufffd' in small.decode(small.encode(s))


def test_same_tokens_as_hf_tokenizers(corpus):
    "tokenizers' BpeTrainer, configured like GPT-2, learns the same token set."
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    text, V = corpus[:300_000], 1024
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=V, special_tokens=[EOT], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    hf_vocab = {bytes(byte_of[c] for c in t) for t in hf.get_vocab() if t != EOT}
    ours = BPETokenizer.train(text, V)
    assert hf_vocab == set(ours.vocab)
    assert abs(len(ours.encode(text)) / len(hf.encode(text).ids) - 1) < 0.005
