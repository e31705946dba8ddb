"""llmbook.dataset: token files, window counts, shift-by-one targets, no window
across the train/validation boundary, determinism, worker processes, bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from llmbook.dataset import *
from llmbook.tokenizer import BPETokenizer


def brute_starts(n, T, S):
    "Every window start that leaves room for T inputs and the last target."
    return [s for s in range(0, n, S) if s + T + 1 <= n]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 300), T=st.integers(1, 40), S=st.integers(1, 50))
def test_window_count_formula(n, T, S):
    if n < T + 1:
        with pytest.raises(ValueError, match='context'):
            SlidingWindowDataset(np.arange(n), T, S)
        return
    ds = SlidingWindowDataset(np.arange(n), T, S)
    assert len(ds) == len(brute_starts(n, T, S))
    assert [ds.span(i)[0] for i in range(len(ds))] == brute_starts(n, T, S)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(10, 200), T=st.integers(1, 9), S=st.integers(1, 12))
def test_every_window_shifts_by_one(n, T, S):
    tokens = np.random.default_rng(n).integers(0, 1000, n)
    ds = SlidingWindowDataset(tokens, T, S)
    for i in range(len(ds)):
        x, y = ds[i]
        s = i * S
        assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (T,)
        assert x.tolist() == tokens[s:s+T].tolist()
        assert y.tolist() == tokens[s+1:s+T+1].tolist()
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.fixture
def split_files(tmp_path):
    "Train and validation token files with recognisable ids."
    train = np.arange(0, 1000) % 500          # ids 0..499
    val = 500 + np.arange(0, 137) % 100       # ids 500..599
    encode_to_file(train, tmp_path/'train.bin', 600)
    encode_to_file(val, tmp_path/'val.bin', 600)
    return load_tokens(tmp_path/'train.bin'), load_tokens(tmp_path/'val.bin')


@pytest.mark.parametrize('T,S', [(1, 1), (16, 1), (16, 16), (64, 7), (136, 1)])
def test_no_window_crosses_train_val(split_files, T, S):
    train, val = split_files
    for arr, lo, hi in [(train, 0, 500), (val, 500, 600)]:
        ds = SlidingWindowDataset(arr, T, S)
        for i in range(len(ds)):
            x, y = ds[i]
            both = torch.cat([x, y])
            assert lo <= both.min() and both.max() < hi
        for b in make_loader(arr, T, 4, S, drop_last=False):
            assert lo <= b[0].min() and b[1].max() < hi
        g = torch.Generator().manual_seed(T)
        for _ in range(20):
            x, y = random_batch(arr, 3, T, g)
            assert lo <= x.min() and y.max() < hi


def test_random_batch_deterministic_and_shifted(split_files):
    train, _ = split_files
    a = random_batch(train, 8, 32, torch.Generator().manual_seed(3))
    b = random_batch(train, 8, 32, torch.Generator().manual_seed(3))
    c = random_batch(train, 8, 32, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    x, y = a
    assert x.shape == y.shape == (8, 32) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x, y):  # each row is a real window of train
        w = torch.cat([row_x, row_y[-1:]])
        starts = [s for s in range(len(train) - 32)
                  if np.array_equal(train[s:s+33], w.numpy())]
        assert starts


def test_random_batch_does_not_touch_global_rng(split_files):
    train, _ = split_files
    torch.manual_seed(0); ref = torch.rand(3)
    torch.manual_seed(0)
    random_batch(train, 4, 8, torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), ref)


def _epoch(loader):
    return [tuple(t.clone() for t in b) for b in loader]


def test_loader_deterministic(split_files):
    train, _ = split_files
    e1 = _epoch(make_loader(train, 16, 8, seed=5))
    e2 = _epoch(make_loader(train, 16, 8, seed=5))
    e3 = _epoch(make_loader(train, 16, 8, seed=6))
    assert len(e1) == len(train[:-1]) // 16 // 8
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(e1, e2))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(e1, e3))
    seq = _epoch(make_loader(train, 16, 8, shuffle=False))
    assert torch.equal(seq[0][0][0], torch.tensor(train[:16].tolist()))


def test_loader_with_workers_matches(split_files):
    train, _ = split_files
    e0 = _epoch(make_loader(train, 16, 8, seed=5))
    e2 = _epoch(make_loader(train, 16, 8, seed=5, num_workers=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(e0, e2))
    assert len(e0) == len(e2)


# --- token files -------------------------------------------------------------

@pytest.mark.parametrize('V,dtype', [(256, np.uint16), (65536, np.uint16),
                                     (65537, np.uint32), (100_277, np.uint32)])
def test_dtype_by_vocab(tmp_path, V, dtype):
    ids = np.array([0, V - 1, 7, V // 2])
    encode_to_file(ids, tmp_path/'t.bin', V)
    t = load_tokens(tmp_path/'t.bin')
    assert t.dtype == dtype and t.tolist() == ids.tolist()
    assert (tmp_path/'t.bin').stat().st_size == 32 + 4 * np.dtype(dtype).itemsize


def test_inputs_list_tensor_array(tmp_path):
    for ids in ([3, 1, 2], np.array([3, 1, 2]), torch.tensor([3, 1, 2])):
        encode_to_file(ids, tmp_path/'t.bin')
        assert load_tokens(tmp_path/'t.bin').tolist() == [3, 1, 2]


def test_memmap_is_read_only(tmp_path):
    encode_to_file([1, 2, 3], tmp_path/'t.bin')
    t = load_tokens(tmp_path/'t.bin')
    assert isinstance(t, np.memmap)
    with pytest.raises(ValueError):
        t[0] = 5


def test_failed_write_keeps_old_file(tmp_path):
    encode_to_file([1, 2, 3], tmp_path/'t.bin')
    with pytest.raises(ValueError, match='out of range'):
        encode_to_file([1, 2, 300], tmp_path/'t.bin', 256)
    with pytest.raises(ValueError, match='>= 0'):
        encode_to_file([1, -2], tmp_path/'t.bin')
    assert load_tokens(tmp_path/'t.bin').tolist() == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ['t.bin']


def test_bad_token_files(tmp_path):
    encode_to_file(np.arange(100), tmp_path/'t.bin')
    data = (tmp_path/'t.bin').read_bytes()
    for name, blob, msg in [('cut.bin', data[:-1], 'truncated'),
                            ('pad.bin', data + b'\0\0', 'truncated or padded'),
                            ('head.bin', data[:20], 'not a token file'),
                            ('empty.bin', b'', 'not a token file'),
                            ('magic.bin', b'X' + data[1:], 'not a token file'),
                            ('size.bin', data[:8] + b'\3' + data[9:], 'token size')]:
        (tmp_path/name).write_bytes(blob)
        with pytest.raises(ValueError, match=msg):
            load_tokens(tmp_path/name)


def test_empty_input(tmp_path):
    with pytest.raises(ValueError, match='empty'):
        encode_to_file([], tmp_path/'t.bin')
    tok = BPETokenizer.train('hello world, hello there', 260)
    with pytest.raises(ValueError, match='empty'):
        tokenize_to_file(tok, '', tmp_path/'t.bin')
    assert not (tmp_path/'t.bin').exists()


def test_context_longer_than_tokens():
    with pytest.raises(ValueError, match='context 10 needs at least 11'):
        SlidingWindowDataset(np.arange(10), 10)
    with pytest.raises(ValueError, match='context 10 needs at least 11'):
        random_batch(np.arange(10), 2, 10)
    with pytest.raises(ValueError, match='context 10 needs at least 11'):
        make_loader(np.arange(10), 10, 2)
    with pytest.raises(ValueError, match='at least 1'):
        SlidingWindowDataset(np.arange(10), 3, 0)
    assert len(SlidingWindowDataset(np.arange(11), 10)) == 1


def test_tokenize_to_file_roundtrip(tmp_path):
    text = 'It is a truth universally acknowledged. ' * 20
    tok = BPETokenizer.train(text, 280)
    t = tokenize_to_file(tok, text, tmp_path/'a.bin')
    assert t.dtype == np.uint16
    assert tok.decode(t) == text
