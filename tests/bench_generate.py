"""Decode speed of llmbook.generate vs Hugging Face `generate` on the same weights.

Not a test (pytest does not collect it): run it with python and read the ratios.

    OMP_NUM_THREADS=1 python tests/bench_generate.py --tokens 200

The model is the book's ~15M shape (`CONFIGS['book-15m']`) with random weights, at
batch size 1, greedy decoding. Timings from the same run: ours with the key/value
cache, ours without it, and `LlamaForCausalLM.generate` with and without its cache,
on the weights copied by `llmbook.hf.to_hf`. Each is the best of `--repeats` runs
after one warm-up. Tokens/s counts new tokens only (prefill of the prompt included
in the time). The runs are interleaved (ours, HF, ours, ...) so that a change in
machine load hits all contenders, and both wall-clock and CPU-time rates are shown
(on a shared machine CPU time is the steadier of the two). It also reports whether
the greedy tokens agree, and the share of the read bound: weight bytes x tokens/s over
the rate at which one core sums a tensor as large as the weights, timed in the same
race. The measuring code is `llmbook.bench.decode_bench`, which
`llmbook bench` uses too.
"""
import argparse
import torch
from llmbook.model import CONFIGS
from llmbook.bench import decode_bench


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='book-15m', choices=sorted(CONFIGS))
    p.add_argument('--tokens', type=int, default=200, help='new tokens per run')
    p.add_argument('--prompt', type=int, default=16, help='prompt length')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=1, help='torch threads')
    p.add_argument('--no-nocache', action='store_true', help='skip the slow uncached runs')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    import transformers
    transformers.logging.set_verbosity_error()

    r = decode_bench(CONFIGS[a.config], a.tokens, a.prompt, a.repeats,
                     nocache=not a.no_nocache, device='cpu')
    n, res = r['n'], r['runs']
    if n < a.tokens: print(f"(capped at {n} new tokens to stay in the context)")
    print(f"config {a.config} ({r['params']:,} params), batch 1, prompt "
          f"{a.prompt}, {n} new tokens, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"floor: {r['weight_bytes'] / 1e6:.1f} MB of float32 weights per token streamed at "
          f"{r['read_bw'] / 1e9:.1f} GB/s ({r['kernel']}) = "
          f"{r['read_bw'] / r['weight_bytes']:.0f} tokens/s")
    print(f"{'':24s} {'tokens/s (wall)':>16s} {'tokens/s (CPU time)':>20s} {'share of floor':>15s}")
    for k, v in res.items():
        print(f"{k:24s} {v['tok_s']:16.1f} {v['cpu_tok_s']:20.1f} {v['bound']:15.1%}")
    pairs = [('llmbook C++, cache', 'transformers, cache'),
             ('llmbook C++ int8, cache', 'llmbook C++, cache'),
             ('llmbook, cache', 'transformers, cache'),
             ('llmbook, cache', 'llmbook, no cache'),
             ('llmbook, no cache', 'transformers, no cache')]
    for x, y in pairs:
        if x in res and y in res:
            print(f"ratio {x} / {y}: {res[x]['tok_s'] / res[y]['tok_s']:.2f}x wall, "
                  f"{res[x]['cpu_tok_s'] / res[y]['cpu_tok_s']:.2f}x CPU time")
    a_ids, b_ids = res['llmbook, cache']['ids'], res['transformers, cache']['ids']
    print(f"greedy tokens equal to HF's: {(a_ids == b_ids).float().mean().item():.1%}")


if __name__ == '__main__':
    main()
