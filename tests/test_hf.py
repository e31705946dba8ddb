"""llmbook.hf: logits parity with Hugging Face transformers in both directions, refusals."""
import sys
import pytest, torch

transformers = pytest.importorskip('transformers')
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM)
from llmbook.model import GPT, GPTConfig, CONFIGS, count_params
from llmbook.hf import (to_hf, from_hf, hf_config, gpt_config, randomize_,
                        max_logit_diff, llama_names)
from llmbook.generate import generate

transformers.logging.set_verbosity_error()
TINY = dict(vocab_size=96, context_len=24, d_model=48, n_layer=3, n_head=6)
CASES = {
    'llama': dict(),
    'llama-gqa2': dict(n_kv_head=2),
    'llama-mqa': dict(n_kv_head=1, tie_weights=False),
    'llama-bias': dict(bias=True, n_kv_head=3),
    'llama-theta': dict(rope_theta=500.0, norm_eps=1e-6, mlp_hidden=100),
    'gpt2': dict(style='gpt2'),
    'gpt2-untied': dict(style='gpt2', tie_weights=False, mlp_hidden=80),
}


@pytest.fixture(params=list(CASES))
def ours(request):
    g = torch.Generator().manual_seed(0)
    return randomize_(GPT(GPTConfig(**TINY | CASES[request.param])), generator=g).eval()


def test_import_is_lazy():
    "Importing llmbook.model/generate/hf must not import transformers."
    import subprocess
    code = ('import sys, llmbook.model, llmbook.generate, llmbook.hf; '
            'sys.exit(int("transformers" in sys.modules))')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0


def test_to_hf_parity(ours):
    hf = to_hf(ours)
    expected = LlamaForCausalLM if ours.cfg.style == 'llama' else GPT2LMHeadModel
    assert type(hf) is expected
    idx = torch.randint(0, 96, (2, 24), generator=torch.Generator().manual_seed(1))
    assert max_logit_diff(ours, hf, idx) < 1e-4


def test_from_hf_parity(ours):
    theirs = randomize_(to_hf(ours), generator=torch.Generator().manual_seed(2))
    back = from_hf(theirs)
    assert back.cfg == ours.cfg
    idx = torch.randint(0, 96, (3, 17), generator=torch.Generator().manual_seed(3))
    assert max_logit_diff(back, theirs, idx) < 1e-4


def test_round_trip_is_exact(ours):
    back = from_hf(to_hf(ours))
    sd, sd2 = ours.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd: assert torch.equal(sd[k], sd2[k]), k


def test_from_native_hf_models():
    "Models built by transformers from their own configs (not via to_hf)."
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=80, hidden_size=64, intermediate_size=160,
                                         num_hidden_layers=2, num_attention_heads=8,
                                         num_key_value_heads=4, max_position_embeddings=32,
                                         rms_norm_eps=1e-6, rope_theta=10000.0)).eval()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=80, n_positions=32, n_embd=64, n_layer=2,
                                      n_head=4)).eval()
    idx = torch.randint(0, 80, (2, 32))
    for hf in (llama, gpt2):
        randomize_(hf, generator=torch.Generator().manual_seed(5))
        ours = from_hf(hf)
        assert count_params(ours.cfg) == sum(p.numel() for p in hf.parameters())
        assert max_logit_diff(ours, hf, idx) < 1e-4


def test_greedy_generation_matches_hf():
    ours = randomize_(GPT(GPTConfig(**TINY | dict(n_kv_head=2))), std=0.3,
                      generator=torch.Generator().manual_seed(7)).eval()
    hf = to_hf(ours)
    prompt = torch.randint(0, 96, (1, 5), generator=torch.Generator().manual_seed(8))
    a = generate(ours, prompt, 15, temperature=0)
    b = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=15,
                    min_new_tokens=15, do_sample=False, pad_token_id=0)
    assert torch.equal(a, b)


def test_dtype_is_kept():
    ours = GPT(GPTConfig(**TINY)).to(torch.bfloat16)
    assert next(to_hf(ours).parameters()).dtype == torch.bfloat16


def test_refusals():
    with pytest.raises(ValueError, match='bias=True'):
        to_hf(GPT(GPTConfig(**TINY | dict(style='gpt2', bias=False))))
    with pytest.raises(ValueError, match='n_kv_head == n_head'):
        hf_config(GPTConfig(**TINY | dict(style='gpt2', n_kv_head=2)))
    with pytest.raises(ValueError, match='hidden_act'):
        gpt_config(LlamaConfig(hidden_act='gelu'))
    with pytest.raises(ValueError, match='attention_bias != mlp_bias'):
        gpt_config(LlamaConfig(attention_bias=True, mlp_bias=False))
    with pytest.raises(ValueError, match='tanh GELU'):
        gpt_config(GPT2Config(activation_function='relu'))
    from transformers import MistralConfig
    with pytest.raises(ValueError, match="model_type 'mistral' is not supported"):
        gpt_config(MistralConfig())


def test_names_cover_every_parameter():
    for kw in (dict(), dict(bias=True, tie_weights=False)):
        cfg = GPTConfig(**TINY | kw)
        names = llama_names(cfg)
        assert set(names) == set(dict(GPT(cfg).named_parameters()))


def test_meta_counts_match_published():
    with torch.device('meta'):
        g2 = GPT2LMHeadModel(GPT2Config())
        l2 = LlamaForCausalLM(LlamaConfig())
    assert sum(p.numel() for p in g2.parameters()) == count_params(CONFIGS['gpt2-124m'])
    assert sum(p.numel() for p in l2.parameters()) == count_params(CONFIGS['llama2-7b'])
