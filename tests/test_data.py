"""llmbook.data: bad input, loader edge cases and downloads, without a network."""
import hashlib, unicodedata, urllib.error, urllib.request, warnings
from pathlib import Path
import pytest
from hypothesis import given, strategies as st
import llmbook.core as core
from llmbook.data import (AUSTEN, Book, austen_book, clean, fake_gutenberg,
                          fetch_book, load_austen, load_texts, normalize,
                          read_text, sentences, strip_gutenberg,
                          train_val_split, words)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    "Empty data and cache folders; every download fails at once."
    monkeypatch.setenv('LLMBOOK_DATA', str(tmp_path/'data'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    monkeypatch.setattr(core.time, 'sleep', lambda s: None)
    def fail(*a, **k): raise urllib.error.URLError('no network')
    monkeypatch.setattr(urllib.request, 'urlopen', fail)
    return tmp_path


def files(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob('*') if p.is_file())


# --- the registry -----------------------------------------------------------

def test_registry_matches_sources():
    assert list(AUSTEN) == [161, 1342, 141, 158, 121, 105, 946]
    for b in AUSTEN.values():
        name = Path(b.file).name
        assert b.file == f'austen/{name}' and name.split('.')[0].split('-')[0] == str(b.pg)
        assert b.url == f'https://www.gutenberg.org/files/{b.pg}/{name}'
        assert b.mirror.startswith('https://raw.githubusercontent.com/GITenberg/')
        assert b.mirror.endswith(f'_{b.pg}/' + b.mirror.split('/')[-2] + f'/{name}')
        assert len(b.sha256) == 64 and int(b.sha256, 16) >= 0


@pytest.mark.parametrize('key', [999, '99999', 'Pride & Prejudice', '', 'emma '])
def test_unknown_book_lists_valid_ones(key):
    if key == 'emma ':  # whitespace and case are forgiven
        assert austen_book(key).pg == 158
        return
    with pytest.raises(ValueError, match=r"unknown Austen book .*1342 \(Pride and Prejudice\)"):
        load_austen(key)


def test_empty_id_list():
    with pytest.raises(ValueError, match='ids is empty'):
        load_austen([])


def test_load_austen_order_and_dedup():
    got = load_austen([946, 'Lady Susan', '1342'])
    assert list(got) == ['Pride and Prejudice', 'Lady Susan']
    assert got['Lady Susan'].startswith('LADY SUSAN')
    assert 'Gutenberg' not in got['Pride and Prejudice']


# --- downloads ---------------------------------------------------------------

def test_missing_data_and_no_network(offline):
    with pytest.raises(FileNotFoundError) as e:
        load_austen(946)
    msg = str(e.value)
    assert 'Lady Susan (PG #946) is not on disk' in msg and 'set LLMBOOK_DATA' in msg
    assert 'austen/946.txt' in msg and '\n' not in msg
    assert files(offline) == []


def test_fallback_to_mirror_when_gutenberg_edited_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('LLMBOOK_DATA', str(tmp_path/'data'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    (tmp_path/'new.txt').write_bytes(b'edited since')
    (tmp_path/'old.txt').write_bytes(b'pinned bytes')
    b = Book(1, 'T', 2000, 'austen/t.txt', (tmp_path/'new.txt').as_uri(),
             (tmp_path/'old.txt').as_uri(), hashlib.sha256(b'pinned bytes').hexdigest())
    p = fetch_book(b)
    assert p.read_bytes() == b'pinned bytes'
    assert files(tmp_path/'cache') == ['llmbook/austen/t.txt']
    assert fetch_book(b) == p  # second time: found in the cache, no download
    (tmp_path/'old.txt').unlink(); (tmp_path/'new.txt').unlink()
    assert fetch_book(b) == p


def test_checksum_mismatch_everywhere_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv('LLMBOOK_DATA', str(tmp_path/'data'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    (tmp_path/'src.txt').write_bytes(b'wrong bytes')
    url = (tmp_path/'src.txt').as_uri()
    b = Book(1, 'T', 2000, 'austen/t.txt', url, url, '0' * 64)
    with pytest.raises(FileNotFoundError, match='checksum mismatch'):
        fetch_book(b)
    assert not (tmp_path/'cache').exists() or files(tmp_path/'cache') == []


class Broken:
    "A response that sends one block, then the connection drops."
    def __init__(self): self.n = 0
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def read(self, size=-1):
        self.n += 1
        if self.n == 1: return b'x' * 1000
        raise ConnectionResetError('connection reset by peer')


def test_interrupted_download_leaves_no_partial_file(offline, monkeypatch):
    calls = []
    def urlopen(req, timeout=None):
        calls.append(req.full_url); return Broken()
    monkeypatch.setattr(urllib.request, 'urlopen', urlopen)
    with pytest.raises(FileNotFoundError, match='Persuasion'):
        fetch_book(AUSTEN[105])
    assert len(calls) == 6  # 3 attempts at gutenberg.org, 3 at the mirror
    assert calls[0] == AUSTEN[105].url and calls[-1] == AUSTEN[105].mirror
    assert files(offline) == []


# --- strip_gutenberg ----------------------------------------------------------

@pytest.mark.parametrize('the', [False, True])
@pytest.mark.parametrize('newline', ['\r\n', '\n', '\r'])
@pytest.mark.parametrize('bom', [False, True])
def test_strip_both_spellings(the, newline, bom):
    raw = fake_gutenberg('Chapter 1\n\nHello\nworld.', the, newline, bom)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no warning when both markers exist
        assert strip_gutenberg(raw.decode('utf-8')) == 'Chapter 1\n\nHello\nworld.'


def test_strip_keeps_text_without_markers_and_warns():
    with pytest.warns(UserWarning, match='no Project Gutenberg START and END marker in x.txt'):
        assert strip_gutenberg('\ufeffJust\r\ntext.\r\n', 'x.txt') == 'Just\ntext.'


def test_strip_with_one_marker_keeps_the_other_side():
    t = '*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody.\n'
    with pytest.warns(UserWarning, match='no Project Gutenberg END marker'):
        assert strip_gutenberg('Header\n' + t) == 'Body.'
    with pytest.warns(UserWarning, match='no Project Gutenberg START marker'):
        assert strip_gutenberg('Body.\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nLicence') == 'Body.'


def test_markers_must_start_a_line():
    body = 'She said "*** START OF THIS PROJECT GUTENBERG EBOOK" aloud.'
    with pytest.warns(UserWarning):
        assert strip_gutenberg(body) == body


# --- normalize -----------------------------------------------------------------

TEXT = st.lists(st.sampled_from(list('ab Z_.,\n\r\t"\'-') +
                ['\u00e9', 'e\u0301', '\u0301', '\u201c', '\u201d', '\u2019', '\u2014',
                 '\u00a0', '\u2028', '\u2026', '\x0c', '  ', '\n\n']),
                max_size=40).map(''.join)


@given(TEXT)
def test_normalize_properties(t):
    n = normalize(t)
    assert normalize(n) == n                       # idempotent
    assert unicodedata.is_normalized('NFC', n)
    assert '\r' not in n and '\t' not in n and '\n\n\n' not in n
    assert n == n.strip('\n') and not n.startswith('\n')
    assert not set(n) & set('\u201c\u201d\u2019\u2014\u2026\u00a0\u2028\x0c')


@given(TEXT)
def test_normalize_without_unwrapping_keeps_lines(t):
    n = normalize(t, unwrap=False, ascii_punct=False, italics=False)
    assert normalize(n, unwrap=False, ascii_punct=False, italics=False) == n


def test_normalize_choices():
    assert normalize('a\nb\n\n\n\nc') == 'a b\n\nc'
    assert normalize('a\nb', unwrap=False) == 'a\nb'
    assert normalize('\u201cHi\u201d', ascii_punct=False) == '\u201cHi\u201d'
    assert normalize('_very_ snake_case __x__ _Eh!_ 2_3') == 'very snake_case x Eh! 2_3'
    assert normalize('_very_', italics=False) == '_very_'
    assert normalize('  poem line\n    indented\n\nprose\nhere') == \
        '  poem line\n    indented\n\nprose here'


# --- loading files -------------------------------------------------------------

def test_empty_file(tmp_path):
    (tmp_path/'e.txt').write_text('')
    with pytest.raises(ValueError, match=r'^e.txt is empty; put text in it'):
        load_texts(tmp_path/'e.txt')
    (tmp_path/'e.txt').write_text(' \n\t\n')
    with pytest.raises(ValueError, match='is empty'):
        load_texts(tmp_path)


def test_gutenberg_file_with_nothing_inside(tmp_path):
    (tmp_path/'g.txt').write_bytes(fake_gutenberg('   '))
    with pytest.raises(ValueError, match='g.txt has no text left after removing'):
        load_texts(tmp_path/'g.txt')


@pytest.mark.parametrize('data,enc', [('Caf\u00e9', 'latin-1'), ('\u00fcber', 'cp1252'),
                                      ('hi', 'utf-16')])
def test_not_utf8(tmp_path, data, enc):
    (tmp_path/'w.txt').write_bytes(data.encode(enc))
    with pytest.raises(ValueError, match=r'w.txt is not UTF-8 text \(byte 0x[0-9a-f]{2} at position \d+\); re-save'):
        load_texts(tmp_path/'w.txt')


def test_folder_without_txt(tmp_path):
    (tmp_path/'notes.md').write_text('# not a txt')
    (tmp_path/'.hidden.txt').write_text('temp file of an editor')
    (tmp_path/'dir.txt').mkdir()  # a folder named like a file
    with pytest.raises(FileNotFoundError, match='no .txt files in folder'):
        load_texts(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist; pass a .txt file'):
        load_texts(tmp_path/'nope')


def test_load_texts_folder_keys_and_cleaning(tmp_path):
    (tmp_path/'b').mkdir()
    (tmp_path/'b'/'two.txt').write_bytes(fake_gutenberg('Second\nbook.', the=True))
    (tmp_path/'one.txt').write_text('\u201cFirst\u201d\r\nbook.', encoding='utf-8-sig')
    with pytest.warns(UserWarning, match='one.txt'):
        got = load_texts(tmp_path)
    assert got == {'b/two': 'Second book.', 'one': '"First" book.'}
    assert read_text(tmp_path/'one.txt').startswith('\u201c')  # BOM dropped


def test_clean_is_strip_then_normalize():
    raw = fake_gutenberg('\u201cA\u201d\nb.').decode('utf-8')
    assert clean(raw) == normalize(strip_gutenberg(raw)) == '"A" b.'


# --- train_val_split -----------------------------------------------------------

def test_split_is_contiguous_tail_of_each_text():
    texts = {k: '\n\n'.join(f'{k} paragraph {i}.' for i in range(100)) for k in 'ABC'}
    train, val = train_val_split(texts, 0.1)
    for k, t in texts.items():
        paras = t.split('\n\n')
        tail = [p for p in paras if p in val.split('\n\n')]
        assert tail == paras[len(paras) - len(tail):]   # a block at the end
        assert 8 <= len(tail) <= 12
    assert not set(train.split('\n\n')) & set(val.split('\n\n'))


def test_split_separator_and_single_string():
    tr, va = train_val_split({'a': 'x ' * 50, 'b': 'y ' * 50}, 0.5, sep='<|endoftext|>')
    assert tr.count('<|endoftext|>') == 1 and va.count('<|endoftext|>') == 1
    tr, va = train_val_split('one two three four five six seven eight nine ten', 0.2)
    assert tr == 'one two three four five six seven eight' and va == 'nine ten'


@pytest.mark.parametrize('frac', [0, 1, -0.1, 1.5])
def test_split_bad_fraction(frac):
    with pytest.raises(ValueError, match='must be between 0 and 1'):
        train_val_split({'a': 'text ' * 10}, frac)


def test_split_too_short_or_empty():
    with pytest.raises(ValueError, match='no texts to split'):
        train_val_split({})
    with pytest.raises(ValueError, match='too short to split'):
        train_val_split({'a': 'x'}, 0.1)


def test_split_on_real_austen():
    books = load_austen([946, 1342])
    train, val = train_val_split(books)
    assert abs(len(val) / (len(train) + len(val)) - 0.1) < 0.01
    assert books['Lady Susan'].split('\n\n')[-1] in val
    assert books['Pride and Prejudice'].split('\n\n')[0] in train


# --- words and sentences -------------------------------------------------------

def test_words_match_hf_whitespace_pretokenizer():
    from tokenizers.pre_tokenizers import Whitespace
    t = load_austen(946)['Lady Susan'][:20000]
    assert words(t) == [w for w, _ in Whitespace().pre_tokenize_str(t)]


def test_sentences():
    assert sentences('Mrs. Smith came. "Did she?" asked Dr. Jones.\n\nYes!') == \
        ['Mrs. Smith came.', '"Did she?" asked Dr. Jones.', 'Yes!']
    assert sentences('') == []
