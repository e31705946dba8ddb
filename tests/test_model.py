"""llmbook.attention and llmbook.model: bad input, properties over many shapes, the contract."""
import dataclasses, math
import pytest, torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from llmbook.attention import (CausalSelfAttention, attention, attention_weights,
                               causal_mask, repeat_kv, check_heads)
from llmbook.model import (GPT, GPTConfig, CONFIGS, PUBLISHED, RoPE, RMSNorm,
                           LayerNorm, count_params, flops_per_token, train_memory,
                           matmul_params, size_table)

TINY = dict(vocab_size=64, context_len=16, d_model=32, n_layer=2, n_head=4)


def tiny(**kw):
    return GPTConfig(**TINY | kw)


# ---------------------------------------------------------------- the contract
@pytest.mark.parametrize('style', ['llama', 'gpt2'])
def test_module_names(style):
    m = GPT(tiny(style=style))
    names = dict(m.named_modules())
    for n in ('tok_emb', 'blocks', 'norm', 'lm_head', 'blocks.0.norm1', 'blocks.0.attn',
              'blocks.0.norm2', 'blocks.0.mlp', 'blocks.1.attn.q_proj', 'blocks.1.attn.k_proj',
              'blocks.1.attn.v_proj', 'blocks.1.attn.o_proj', 'blocks.0.mlp.up_proj',
              'blocks.0.mlp.down_proj'):
        assert n in names, n
    assert ('blocks.0.mlp.gate_proj' in names) == (style == 'llama')
    assert hasattr(m, 'pos_emb') == (style == 'gpt2')
    assert isinstance(m.blocks, torch.nn.ModuleList)
    for p in 'qkvo': assert isinstance(names[f'blocks.0.attn.{p}_proj'], torch.nn.Linear)


def test_config_fields_and_defaults():
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    assert {'vocab_size', 'context_len', 'd_model', 'n_layer', 'n_head', 'n_kv_head', 'style',
            'dropout', 'bias', 'tie_weights', 'mlp_hidden', 'rope_theta', 'norm_eps'} <= fields
    c = GPTConfig()
    assert c.style == 'llama' and c.bias is False and c.n_kv_head == c.n_head
    g = GPTConfig(style='gpt2')
    assert g.bias is True and g.mlp_hidden == 4 * g.d_model
    assert GPTConfig(**dataclasses.asdict(c)) == c  # round-trips through a dict (checkpoints)


@pytest.mark.parametrize('style', ['llama', 'gpt2'])
def test_logits_shape_and_dtype(style):
    m = GPT(tiny(style=style))
    out = m(torch.randint(0, 64, (3, 16)))
    assert out.shape == (3, 16, 64) and out.dtype == torch.float32


def test_bfloat16_forward():
    m = GPT(tiny(n_kv_head=2)).to(torch.bfloat16)
    out = m(torch.randint(0, 64, (2, 8)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('kw,msg', [
    (dict(d_model=30, n_head=4), 'not divisible by n_head'),
    (dict(n_head=4, n_kv_head=3), 'not divisible by n_kv_head'),
    (dict(style='bert'), "'llama' or 'gpt2'"),
    (dict(d_model=12, n_head=4), 'odd'),
])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg): tiny(**kw)


def test_bad_attention_shapes():
    with pytest.raises(ValueError, match='divisible by n_head'): CausalSelfAttention(30, 4)
    with pytest.raises(ValueError, match='divisible by n_kv_head'): check_heads(32, 4, 3)


@pytest.mark.parametrize('style', ['llama', 'gpt2'])
def test_bad_input(style):
    m = GPT(tiny(style=style))
    with pytest.raises(ValueError, match=r'longer than context_len=16.*crop'):
        m(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r'token id 64 is outside the vocabulary \[0, 64\)'):
        m(torch.tensor([[1, 64]]))
    with pytest.raises(ValueError, match='token id -1'):
        m(torch.tensor([[-1, 3]]))


# ---------------------------------------------------------------- attention
@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 9), extra=st.integers(0, 5), nkv=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2**16))
def test_explicit_equals_sdpa(T, extra, nkv, seed):
    g = torch.Generator().manual_seed(seed)
    S = T + extra
    q = torch.randn(2, 4, T, 8, generator=g)
    k, v = torch.randn(2, nkv, S, 8, generator=g), torch.randn(2, nkv, S, 8, generator=g)
    rep = 4 // nkv
    m = causal_mask(T, S)
    ours = attention(q, repeat_kv(k, rep), repeat_kv(v, rep), m)
    ref = F.scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), attn_mask=m)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_mask_shape_and_offset():
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True] * 5]
    w = attention_weights(torch.randn(1, 4, 3), torch.randn(1, 4, 3), causal_mask(4))
    assert (w.triu(1) == 0).all() and torch.allclose(w.sum(-1), torch.ones(1, 4))


@settings(max_examples=15, deadline=None)
@given(nkv=st.sampled_from([1, 2, 4]), T=st.integers(2, 10), seed=st.integers(0, 2**16))
def test_module_fast_equals_explicit_and_is_causal(nkv, T, seed):
    torch.manual_seed(seed)
    a = CausalSelfAttention(32, 4, nkv).eval()
    x = torch.randn(2, T, 32)
    y = a(x)
    a.explicit = True
    torch.testing.assert_close(a(x), y, atol=1e-5, rtol=1e-5)
    x2 = x.clone(); x2[:, -1] += 5.0
    torch.testing.assert_close(a(x2)[:, :-1], y[:, :-1], atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    m = GPT(tiny(dropout=0.3))
    idx = torch.randint(0, 64, (2, 8))
    m.eval()
    with torch.no_grad(): assert torch.equal(m(idx), m(idx))
    m.train()
    with torch.no_grad(): assert not torch.equal(m(idx), m(idx))


# ---------------------------------------------------------------- parts
@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 31), n=st.integers(0, 31), shift=st.integers(-31, 31),
       seed=st.integers(0, 2**16))
def test_rope_relative(m, n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    hs, T = 16, 64
    rope = RoPE(hs, T)
    q, k = torch.randn(hs, generator=g), torch.randn(hs, generator=g)
    def score(a, b):
        x = torch.zeros(1, 1, T, hs); y = torch.zeros(1, 1, T, hs)
        x[0, 0, a], y[0, 0, b] = q, k
        return (rope(x)[0, 0, a] @ rope(y)[0, 0, b]).item()
    m2, n2 = m + shift, n + shift
    if 0 <= m2 < T and 0 <= n2 < T:
        assert math.isclose(score(m, n), score(m2, n2), rel_tol=1e-4, abs_tol=1e-4)


def test_rope_start_offset():
    rope = RoPE(8, 20)
    x = torch.randn(2, 3, 20, 8)
    torch.testing.assert_close(rope(x[:, :, 7:12], start=7), rope(x)[:, :, 7:12])


@pytest.mark.parametrize('shape', [(4, 16), (2, 3, 16)])
def test_norms_equal_torch(shape):
    x = torch.randn(*shape) * 5
    r, ref = RMSNorm(16, 1e-6), torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad(): r.weight.uniform_(0.5, 2); ref.weight.copy_(r.weight)
    torch.testing.assert_close(r(x), ref(x))
    ln, ref = LayerNorm(16, bias=False), torch.nn.LayerNorm(16, bias=False)
    with torch.no_grad(): ln.weight.uniform_(0.5, 2); ref.weight.copy_(ln.weight)
    torch.testing.assert_close(ln(x), ref(x))


# ---------------------------------------------------------------- init and tying
def test_tying_and_scaled_init():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=256, context_len=16, d_model=128, n_layer=8, n_head=4))
    assert m.lm_head.weight is m.tok_emb.weight
    u = GPT(tiny(tie_weights=False))
    assert u.lm_head.weight is not u.tok_emb.weight
    target = 0.02 / math.sqrt(16)
    for blk in m.blocks:
        assert abs(blk.attn.o_proj.weight.std().item() - target) < 0.1 * target
        assert abs(blk.mlp.down_proj.weight.std().item() - target) < 0.1 * target
        assert abs(blk.attn.q_proj.weight.std().item() - 0.02) < 0.002


# ---------------------------------------------------------------- counting
@pytest.mark.parametrize('kw', [dict(), dict(style='gpt2'), dict(n_kv_head=1),
                                dict(tie_weights=False, bias=True),
                                dict(style='gpt2', bias=False, tie_weights=False),
                                dict(mlp_hidden=100)])
def test_count_params_matches_model(kw):
    c = tiny(**kw)
    assert count_params(c) == GPT(c).num_params()


def test_published_counts_on_meta():
    for name, n in PUBLISHED.items():
        with torch.device('meta'): m = GPT(CONFIGS[name])
        assert m.num_params() == count_params(CONFIGS[name]) == n
    assert PUBLISHED['gpt2-124m'] == 124_439_808 and PUBLISHED['llama2-7b'] == 6_738_415_616


@pytest.mark.parametrize('kw', [dict(n_kv_head=2), dict(style='gpt2')])
def test_flops_formula_matches_flop_counter(kw):
    from torch.utils.flop_counter import FlopCounterMode
    c = tiny(**kw)
    m = GPT(c)
    for b in m.blocks: b.attn.explicit = True
    idx = torch.randint(0, 64, (2, 12))
    with FlopCounterMode(display=False) as fc:
        m(idx).sum().backward()
    assert fc.get_total_flops() == flops_per_token(c, 12) * 24
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad(): m(idx)
    assert fc.get_total_flops() == flops_per_token(c, 12, training=False) * 24
    assert matmul_params(c) < count_params(c) + c.vocab_size * c.d_model


def test_memory_and_table():
    mem = train_memory(CONFIGS['llama2-7b'])
    assert sum(mem.values()) == 16 * PUBLISHED['llama2-7b']
    t = size_table()
    assert list(t.index) == [k for k in CONFIGS if k != 'tiny']
    assert abs(t.loc['gpt2-124m', 'params (M)'] - 124.439808) < 1e-9


@pytest.mark.parametrize('field,value', [('vocab_size', 0), ('n_layer', -1), ('context_len', 0),
                                         ('d_model', -32), ('n_head', 0), ('n_layer', 2.5),
                                         ('vocab_size', True), ('dropout', 1.0), ('dropout', -0.1)])
def test_config_refuses_impossible_sizes_in_one_line(field, value):
    with pytest.raises(ValueError) as e:
        GPTConfig(**TINY | {field: value})
    msg = str(e.value)
    assert f'{field}={value!r} must be' in msg and '\n' not in msg
