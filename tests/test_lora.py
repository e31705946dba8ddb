"""LoRA against Hugging Face peft on a transformers Llama, and its invariants (llmbook.lora)."""
import copy
import pytest, torch
import torch.nn as nn
from llmbook.model import GPT, GPTConfig
from llmbook.lora import *

peft = pytest.importorskip('peft')
TINY = GPTConfig(vocab_size=64, context_len=16, d_model=32, n_layer=2, n_head=4, n_kv_head=2)


def _hf_to_ours(k):
    "peft-on-LlamaForCausalLM adapter name -> our GPT's name."
    k = k.removeprefix('base_model.model.model.layers.')
    i, rest = k.split('.', 1)
    rest = rest.replace('self_attn.', 'attn.').replace('.default.weight', '')
    return f'blocks.{i}.{rest}'


@pytest.mark.parametrize('targets', [('q_proj', 'v_proj'),
                                     ('q_proj', 'k_proj', 'o_proj', 'gate_proj', 'down_proj')])
def test_matches_peft_on_a_transformers_llama(targets):
    from llmbook.hf import to_hf
    torch.manual_seed(0)
    ours = GPT(TINY).eval()
    hf = to_hf(copy.deepcopy(ours)).eval()
    cfg = peft.LoraConfig(r=4, lora_alpha=12, target_modules=list(targets))
    ref = peft.get_peft_model(hf, cfg).eval()
    for n, p in ref.named_parameters():
        if 'lora_B' in n: nn.init.normal_(p, std=0.2)
    apply_lora(ours, targets, r=4, alpha=12)
    sd = {_hf_to_ours(k): v for k, v in ref.state_dict().items() if 'lora_' in k}
    missing = ours.load_state_dict(sd, strict=False).missing_keys
    assert not [k for k in missing if 'lora_' in k]
    assert param_counts(ours)['trainable'] == ref.get_nb_trainable_parameters()[0]
    idx = torch.randint(64, (3, 16))
    with torch.no_grad():
        diff = (ours(idx) - ref(idx).logits).abs().max().item()
        assert diff < 1e-4, diff
        merged = merge_lora(ours)(idx) - ref.merge_and_unload()(idx).logits
        assert merged.abs().max().item() < 1e-4
    assert not lora_layers(ours)


def test_merge_unmerge_roundtrip():
    torch.manual_seed(1)
    lin = nn.Linear(20, 12)
    w0 = lin.weight.detach().clone()
    lora = LoRALinear(lin, r=3, alpha=6)
    nn.init.normal_(lora.lora_B)
    x = torch.randn(4, 20)
    with torch.no_grad():
        y = lora(x)
        lora.merge(); lora.merge()  # twice: merged once
        torch.testing.assert_close(lora(x), y, atol=1e-5, rtol=0)
        lora.unmerge(); lora.unmerge()
        torch.testing.assert_close(lin.weight, w0, atol=1e-6, rtol=0)
        torch.testing.assert_close(lora(x), y, atol=1e-5, rtol=0)


def test_only_adapters_get_gradients():
    torch.manual_seed(2)
    m = apply_lora(GPT(TINY), r=2)
    m(torch.randint(64, (2, 8))).sum().backward()
    for n, p in m.named_parameters():
        if n.endswith(('lora_A', 'lora_B')): assert p.requires_grad
        else: assert not p.requires_grad and p.grad is None, n
    # B starts at 0, so only B gets a nonzero gradient at the first step
    l = lora_layers(m)[0]
    assert l.lora_B.grad.abs().sum() > 0 and l.lora_A.grad.abs().sum() == 0
    assert set(lora_state_dict(m)) == {n for n, p in m.named_parameters() if p.requires_grad}


def test_dropout_only_in_training():
    torch.manual_seed(3)
    lora = LoRALinear(nn.Linear(16, 16), r=4, dropout=0.5)
    nn.init.normal_(lora.lora_B)
    x = torch.randn(8, 16)
    lora.eval()
    with torch.no_grad(): assert torch.equal(lora(x), lora(x))
    lora.train()
    with torch.no_grad(): assert not torch.equal(lora(x), lora(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match='rank'): LoRALinear(nn.Linear(4, 4), r=0)
    with pytest.raises(ValueError, match="linear layers are named"):
        apply_lora(GPT(TINY), targets=('c_attn',))


def test_from_peft_names():
    sd = {'base_model.model.blocks.0.attn.q_proj.lora_A.default.weight': torch.zeros(1),
          'base_model.model.blocks.0.attn.q_proj.base_layer.weight': torch.zeros(1)}
    assert list(from_peft_names(sd)) == ['blocks.0.attn.q_proj.lora_A']
