"""Benchmark: our BPE trainer and encoders against Hugging Face `tokenizers`.

Run with python (pytest does not collect it):

    LLMBOOK_DATA=/path/to/data python tests/bench_tokenizer.py [--vocab 4096]
        [--threads 1] [--repeat 3]

Trains a byte-level BPE with `vocab` tokens (including `<|endoftext|>`) on the
whole Austen corpus with `llmbook.tokenizer.BPETokenizer.train` and with
`tokenizers`' `BpeTrainer` (ByteLevel pre-tokenizer, GPT-2's regex, the same
256-byte alphabet; fed the corpus as one string and paragraph by paragraph,
and compared at its faster), in the same run; then encodes the corpus with our `encode`,
our `to_tiktoken()` and `tokenizers`. Prints the best of `repeat` wall times
and the ratios to `tokenizers`. Goals from the book: training within 5x of
`tokenizers`, compression within 2%, `to_tiktoken()` at least as fast as
`tokenizers`. Nothing here asserts on time. The measuring code is
`llmbook.bench.tokenizer_bench`, which `llmbook bench` uses too.
"""
import argparse, os


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--vocab', type=int, default=4096)
    p.add_argument('--threads', type=int, default=1,
                   help="threads for tokenizers' Rust pool (RAYON_NUM_THREADS)")
    p.add_argument('--repeat', type=int, default=3)
    a = p.parse_args()
    os.environ['RAYON_NUM_THREADS'] = str(a.threads)  # before tokenizers loads
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'true')
    import tokenizers
    from llmbook.data import load_austen
    from llmbook.bench import tokenizer_bench

    docs = list(load_austen().values())
    corpus = '\n\n'.join(docs)
    print(f'corpus: {len(docs)} books, {len(corpus):,} characters, '
          f'{len(corpus.encode("utf-8")):,} bytes; vocab {a.vocab}; tokenizers '
          f'{tokenizers.__version__} with {a.threads} thread(s); best of {a.repeat}')
    r = tokenizer_bench(corpus, a.vocab, a.repeat)
    t, e, n, nbytes = r['train_s'], r['encode_s'], r['tokens'], r['bytes']
    assert r['same_ids'], 'our encode and to_tiktoken() disagree'
    t_hf = min(t['hf one'], t['hf paras'])

    print(f'\ntraining (vocab {a.vocab})')
    print(f"  ours        {t['ours']:7.2f} s")
    print(f"  tokenizers  {t['hf one']:7.2f} s  (one string)")
    print(f"  tokenizers  {t['hf paras']:7.2f} s  ({r['paras']:,} paragraphs)")
    print(f"  ratio ours/tokenizers (best of its two): {t['ours'] / t_hf:.2f}x  "
          '(goal <= 5x)')
    print('\ncompression on the training corpus (bytes per token)')
    print(f"  ours        {nbytes / n['ours']:7.3f}  ({n['ours']:,} tokens)")
    print(f"  tokenizers  {nbytes / n['tokenizers']:7.3f}  ({n['tokenizers']:,} tokens)")
    print(f"  token count ours/tokenizers: {n['ours'] / n['tokenizers']:.4f}  "
          f'(goal within 2%)')
    print('\nencoding the corpus')
    print(f"  ours encode            {e['ours']:7.2f} s")
    print(f"  ours to_tiktoken()     {e['tiktoken']:7.2f} s  (ids identical to encode)")
    print(f"  tokenizers encode      {e['hf one']:7.2f} s  (one string)")
    print(f"  tokenizers encode_batch{e['hf batch']:7.2f} s  ({r['paras']:,} paragraphs)")
    hf_best = min(e['hf one'], e['hf batch'])
    print(f"  ratio ours/tokenizers (best of its two): {e['ours'] / hf_best:.2f}x")
    print(f"  ratio to_tiktoken/tokenizers: {e['tiktoken'] / hf_best:.2f}x  "
          f'(goal <= 1x)')


if __name__ == '__main__':
    main()
