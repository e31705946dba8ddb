"""Decode speed of llmbook.generate vs Hugging Face `generate` on the same weights.

Not a test (pytest does not collect it): run it with python and read the ratios.

    OMP_NUM_THREADS=1 python tests/bench_generate.py --tokens 200

The model is the book's ~15M shape (`CONFIGS['book-15m']`) with random weights, at
batch size 1, greedy decoding. Three timings from the same run: ours with the
key/value cache, ours without it, and `LlamaForCausalLM.generate` (use_cache=True)
on the weights copied by `llmbook.hf.to_hf`. Each is the best of `--repeats` runs
after one warm-up. Tokens/s counts new tokens only (prefill of the prompt included
in the time). The runs are interleaved (ours, HF, ours, ...) so that a change in
machine load hits all contenders, and both wall-clock and CPU-time rates are shown
(on a shared machine CPU time is the steadier of the two). It also reports whether
the greedy tokens agree.
"""
import argparse, time
import torch
from llmbook.core import seed_everything
from llmbook.model import GPT, CONFIGS
from llmbook.hf import to_hf, randomize_
from llmbook.generate import generate


def timed(fn):
    "Run fn once; return (wall seconds, CPU seconds of this process, result)."
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def race(fns, repeats):
    "Best wall and CPU time of each fn, runs interleaved so load changes hit all."
    for f in fns.values(): f()  # warm-up
    best = {k: [float('inf'), float('inf'), None] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            w, c, out = timed(f)
            best[k] = [min(best[k][0], w), min(best[k][1], c), out]
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='book-15m', choices=sorted(CONFIGS))
    p.add_argument('--tokens', type=int, default=200, help='new tokens per run')
    p.add_argument('--prompt', type=int, default=16, help='prompt length')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=1, help='torch threads')
    p.add_argument('--no-nocache', action='store_true', help='skip the slow uncached run')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    import transformers
    transformers.logging.set_verbosity_error()

    g = seed_everything(0)
    cfg = CONFIGS[a.config]
    model = randomize_(GPT(cfg), std=0.05, generator=g).eval()
    hf = to_hf(model)
    prompt = torch.randint(0, cfg.vocab_size, (1, a.prompt), generator=g)
    n = min(a.tokens, cfg.context_len - a.prompt)
    if n < a.tokens: print(f"(capped at {n} new tokens to stay in the context)")

    ours = lambda cache: lambda: generate(model, prompt, n, temperature=0, use_cache=cache)
    theirs = lambda: hf.generate(prompt, attention_mask=torch.ones_like(prompt),
                                 max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 use_cache=True, pad_token_id=0)
    fns = {'llmbook, cache': ours(True), 'HF generate, cache': theirs}
    if not a.no_nocache: fns['llmbook, no cache'] = ours(False)
    with torch.inference_mode(): res = race(fns, a.repeats)

    print(f"config {a.config} ({model.num_params():,} params), batch 1, prompt "
          f"{a.prompt}, {n} new tokens, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"{'':20s} {'tokens/s (wall)':>16s} {'tokens/s (CPU time)':>20s}")
    for k, (w, c, _) in res.items(): print(f"{k:20s} {n / w:16.1f} {n / c:20.1f}")
    def ratio(x, y, i): return res[y][i] / res[x][i]
    for x, y in [('llmbook, cache', 'HF generate, cache'),
                 ('llmbook, cache', 'llmbook, no cache')]:
        if y in res:
            print(f"ratio {x} / {y}: {ratio(x, y, 0):.2f}x wall, "
                  f"{ratio(x, y, 1):.2f}x CPU time")
    a_ids, b_ids = res['llmbook, cache'][2], res['HF generate, cache'][2]
    same = (a_ids == b_ids).float().mean().item()
    print(f"greedy tokens equal to HF's: {same:.1%}")


if __name__ == '__main__':
    main()
