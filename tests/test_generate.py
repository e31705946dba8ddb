"""llmbook.generate: sampling filters, the KV cache, stop tokens, bad input."""
import pytest, torch
from hypothesis import given, settings, strategies as st
from llmbook.model import GPT, GPTConfig
from llmbook.generate import (top_k_filter, top_p_filter, sample_next, generate, KVCache,
                              kv_cache_bytes)

TINY = dict(vocab_size=64, context_len=16, d_model=32, n_layer=2, n_head=4)
NEG = float('-inf')


def model(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**TINY | kw)).eval()


# ---------------------------------------------------------------- filters
def naive_top_p(row, p):
    probs = torch.tensor(row).softmax(-1).tolist()
    keep, mass = set(), 0.0
    for i in sorted(range(len(row)), key=lambda i: -probs[i]):
        if mass >= p: break
        keep.add(i); mass += probs[i]
    return [x if i in keep else NEG for i, x in enumerate(row)]


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.lists(st.floats(-5, 5, width=32), min_size=8, max_size=8),
                     min_size=1, max_size=3),
       k=st.integers(1, 8), p=st.floats(0.01, 1.0))
def test_filters_equal_naive(rows, k, p):
    x = torch.tensor(rows)
    for r, out in zip(rows, top_k_filter(x, k).tolist()):
        kth = sorted(r, reverse=True)[k - 1]
        assert out == [v if v >= kth else NEG for v in r]
    # naive in float64 can disagree at exact ties of cumulative mass; compare kept sets
    got = (top_p_filter(x, p) > NEG).sum(-1).tolist()
    want = [sum(v > NEG for v in naive_top_p(r, p)) for r in rows]
    assert all(abs(a - b) <= 1 for a, b in zip(got, want))
    assert all(n >= 1 for n in got)


def test_filters_equal_hf_warpers():
    tr = pytest.importorskip('transformers.generation.logits_process')
    x = torch.randn(5, 100, generator=torch.Generator().manual_seed(0)) * 3
    for k in (1, 7, 50):
        assert torch.equal(top_k_filter(x, k), tr.TopKLogitsWarper(k)(None, x))
    for p in (0.05, 0.5, 0.9, 0.99):
        assert torch.equal(top_p_filter(x, p), tr.TopPLogitsWarper(p)(None, x))


@pytest.mark.parametrize('kw,msg', [(dict(top_p=0.0), r'top_p=0.0 must be in \(0, 1\]'),
                                    (dict(top_p=1.5), r'\(0, 1\]'),
                                    (dict(top_k=0), 'top_k=0 must be at least 1'),
                                    (dict(temperature=-0.5), 'temperature')])
def test_bad_sampling_settings(kw, msg):
    with pytest.raises(ValueError, match=msg): sample_next(torch.randn(1, 5), **kw)
    with pytest.raises(ValueError, match=msg):
        generate(model(), torch.zeros(1, 2, dtype=torch.long), 2, **kw)


def test_sampling_follows_distribution():
    logits = torch.tensor([[1.0, 0.0, -1.0, 2.0]])
    n = 40_000
    draws = sample_next(logits.expand(n, 4), temperature=0.7,
                        generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws[:, 0], minlength=4) / n
    torch.testing.assert_close(freq, (logits / 0.7).softmax(-1)[0], atol=0.01, rtol=0)
    assert sample_next(logits, temperature=0).item() == 3
    assert sample_next(logits, top_k=1).item() == 3  # top-1 sampling is greedy


# ---------------------------------------------------------------- KV cache
@pytest.mark.parametrize('kw', [dict(), dict(n_kv_head=2), dict(n_kv_head=1),
                                dict(style='gpt2')])
@pytest.mark.parametrize('chunks', [[16], [1] * 16, [5, 1, 1, 4, 5], [3, 13]])
def test_cache_equals_recompute(kw, chunks):
    m = model(**kw)
    idx = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = m(idx)
        cache, outs, t = KVCache.for_model(m, 3), [], 0
        for c in chunks:
            outs.append(m(idx[:, t:t + c], kv_cache=cache)); t += c
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.pos == 16 and len(cache) == 2


def test_cache_full_is_refused_and_sized():
    m = model(n_kv_head=2)
    cache = KVCache.for_model(m, 2)
    with torch.no_grad(): m(torch.zeros(2, 16, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match='context_len'):
        m(torch.zeros(2, 1, dtype=torch.long), kv_cache=cache)
    assert cache.nbytes() == kv_cache_bytes(m.cfg, 2, bytes_per=4)


# ---------------------------------------------------------------- generate
@pytest.mark.parametrize('kw', [dict(n_kv_head=2), dict(style='gpt2')])
def test_cache_and_no_cache_agree_past_the_context(kw):
    m = model(**kw)
    prompt = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(2))
    a = generate(m, prompt, 30, temperature=0)
    assert torch.equal(a, generate(m, prompt, 30, temperature=0, use_cache=False))
    assert a.shape == (2, 36) and torch.equal(a[:, :6], prompt)
    s = [generate(m, prompt, 30, top_k=20, top_p=0.9, temperature=0.8, use_cache=c,
                  generator=torch.Generator().manual_seed(4)) for c in (True, False)]
    assert torch.equal(*s)


def test_long_prompt_is_cropped():
    m = model()
    long = torch.randint(0, 64, (1, 50), generator=torch.Generator().manual_seed(3))
    out = generate(m, long, 5, temperature=0)
    assert torch.equal(out[:, :50], long)
    assert torch.equal(out[:, 50:], generate(m, long[:, -16:], 5, temperature=0)[:, 16:])


def test_stop_tokens_batch():
    m = model()
    prompt = torch.randint(0, 64, (2, 4), generator=torch.Generator().manual_seed(5))
    free = generate(m, prompt, 12, temperature=0)
    stop = free[0, 6].item()
    out = generate(m, prompt, 12, temperature=0, stop_tokens=[stop])
    first0 = (free[0, 4:] == stop).nonzero()[0].item() + 4
    assert torch.equal(out[0, :first0 + 1], free[0, :first0 + 1])
    assert (out[0, first0:] == stop).all()  # padded with its stop token
    hits1 = (free[1, 4:] == stop).nonzero()
    if len(hits1) == 0: assert out.shape[1] == 16  # row 1 never stops: runs to the end
    else: assert out.shape[1] == 4 + max(first0 - 4, hits1[0].item()) + 1


def test_seeded_and_restores_mode():
    m = model(dropout=0.2)
    m.train()
    p = torch.zeros(1, 3, dtype=torch.long)
    a = generate(m, p, 10, generator=torch.Generator().manual_seed(0))
    b = generate(m, p, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and m.training
    c = generate(m, p, 10, generator=torch.Generator().manual_seed(1))
    assert a.dtype == torch.long and not torch.equal(a, c)


def test_bad_idx():
    m = model()
    with pytest.raises(ValueError, match=r'idx must be \(B, T\)'):
        generate(m, torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match='outside the vocabulary'):
        generate(m, torch.tensor([[70]]), 2)


@pytest.mark.parametrize('kw,says', [(dict(max_new_tokens=-5), 'max_new_tokens=-5 must be >= 0'),
                                     (dict(max_new_tokens=3, temperature=float('nan')), 'finite'),
                                     (dict(max_new_tokens=3, temperature=float('inf')), 'finite')])
def test_generate_refuses_bad_settings(kw, says):
    with pytest.raises(ValueError, match=says):
        generate(model(), torch.zeros(1, 2, dtype=torch.long), **kw)


def test_generate_reports_each_token():
    m, seen = model(), []
    out = generate(m, torch.zeros(2, 3, dtype=torch.long), 4, temperature=0, on_token=seen.append)
    assert torch.equal(torch.cat(seen, 1), out[:, 3:])


# ---------------------------------------------------------------- the C++ decoder
from llmbook import generate as gen_mod
from llmbook.generate import CppDecoder, generate_fast, int8_model, quantize_int8, decoder_lib


def cpp():
    if decoder_lib() is None: pytest.skip('no C++ decoder here (no compiler?)')


def test_quantize_int8_per_row():
    w = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * torch.arange(1, 7)[:, None]
    q, s = quantize_int8(w)
    assert q.dtype == torch.int8 and s.shape == (6,) and q.abs().max() == 127
    assert ((q.float() * s[:, None] - w).abs() <= s[:, None] / 2 + 1e-6).all()


@pytest.mark.parametrize('kw', [dict(), dict(n_kv_head=2), dict(n_kv_head=1),
                                dict(d_model=48, n_head=3, mlp_hidden=50)])  # ragged widths
@pytest.mark.parametrize('int8', [False, True])
def test_cpp_logits_equal_the_model(kw, int8):
    cpp()
    m = model(**kw)
    with torch.no_grad():  # random, larger weights than the init, so logits differ a lot
        for p in m.parameters(): p.add_(torch.randn_like(p) * 0.05)
    ref_model = int8_model(m) if int8 else m
    idx = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(): ref = ref_model(idx)[0]  # (T, V)
    dec = CppDecoder(m, int8)
    got = torch.cat([dec(idx[:, :3])] + [dec(idx[:, t:t + 1]) for t in range(3, 16)])
    torch.testing.assert_close(got, ref[2:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='context_len'): dec(idx[:, :1])


@pytest.mark.parametrize('int8', [False, True])
def test_generate_fast_equals_generate(int8):
    cpp()
    m = model(n_kv_head=2)
    ref = int8_model(m) if int8 else m
    prompt = torch.randint(0, 64, (1, 6), generator=torch.Generator().manual_seed(2))
    a = generate_fast(m, prompt, 30, temperature=0, int8=int8)  # runs past the context
    assert torch.equal(a, generate(ref, prompt, 30, temperature=0))
    s = [f(mm, prompt, 30, top_k=20, top_p=0.9, temperature=0.8,
           generator=torch.Generator().manual_seed(4), **kw)
         for f, mm, kw in ((generate_fast, m, dict(int8=int8)), (generate, ref, {}))]
    assert torch.equal(*s)
    free = generate_fast(m, prompt, 12, temperature=0, int8=int8)
    stop = free[0, 9].item()
    out = generate_fast(m, prompt, 12, temperature=0, int8=int8, stop_tokens=[stop])
    assert torch.equal(out, generate(ref, prompt, 12, temperature=0, stop_tokens=[stop]))


def test_generate_fast_refuses_like_generate():
    cpp()
    m = model()
    with pytest.raises(ValueError, match='outside the vocabulary'):
        generate_fast(m, torch.tensor([[70]]), 2)
    with pytest.raises(ValueError, match='max_new_tokens=-1'):
        generate_fast(m, torch.zeros(1, 2, dtype=torch.long), -1)
    with pytest.raises(ValueError, match='llama-style'): CppDecoder(model(style='gpt2'))


def test_generate_fast_other_cases_use_generate():
    m = model(style='gpt2')  # no C++ path: the readable one, same tokens
    p = torch.zeros(2, 3, dtype=torch.long)
    assert torch.equal(generate_fast(m, p, 5, temperature=0), generate(m, p, 5, temperature=0))
    assert torch.equal(generate_fast(m, p, 5, temperature=0, int8=True),
                       generate(int8_model(m), p, 5, temperature=0))


def test_fallback_without_a_compiler(monkeypatch, capsys):
    m, p = model(n_kv_head=2), torch.zeros(1, 3, dtype=torch.long)
    monkeypatch.setenv('LLMBOOK_NO_CPP', '1')
    monkeypatch.setattr(gen_mod, '_LIB', {})
    assert torch.equal(generate_fast(m, p, 20, temperature=0), generate(m, p, 20, temperature=0))
    assert torch.equal(generate_fast(m, p, 20, temperature=0, int8=True),
                       generate(int8_model(m), p, 20, temperature=0))
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'no C++ decoder (LLMBOOK_NO_CPP is set)' in err


def test_fallback_when_the_build_fails(monkeypatch, capsys):
    def broken(): raise RuntimeError('Error building extension llmbook_decode\nmore')
    monkeypatch.setattr(gen_mod, '_LIB', {})
    monkeypatch.setattr(gen_mod, '_build', broken)
    m, p = model(), torch.zeros(1, 3, dtype=torch.long)
    assert torch.equal(generate_fast(m, p, 5, temperature=0), generate(m, p, 5, temperature=0))
    assert capsys.readouterr().err == ('llmbook: no C++ decoder (Error building extension '
                                       'llmbook_decode); decoding with PyTorch\n')


def test_csrc_is_package_data():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    assert gen_mod.CSRC.exists()
    assert 'recursive-include llmbook/csrc *.cpp' in (root/'MANIFEST.in').read_text()
