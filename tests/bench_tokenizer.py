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
`tokenizers`. Nothing here asserts on time.
"""
import argparse, os, time


def best(f, repeat):
    "Smallest wall time of `repeat` calls of `f`, and its last result."
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); out = f(); times.append(time.perf_counter() - t0)
    return min(times), out


def hf_tokenizer(vocab):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                 use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=['<|endoftext|>'], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return tok, trainer


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
    from llmbook.tokenizer import BPETokenizer

    docs = list(load_austen().values())
    corpus = '\n\n'.join(docs)
    paras = corpus.split('\n\n')
    nbytes = len(corpus.encode('utf-8'))
    print(f'corpus: {len(docs)} books, {len(corpus):,} characters, '
          f'{nbytes:,} bytes; vocab {a.vocab}; tokenizers {tokenizers.__version__}'
          f' with {a.threads} thread(s); best of {a.repeat}')

    t_ours, ours = best(lambda: BPETokenizer.train(corpus, a.vocab), a.repeat)
    def train_hf(texts):
        tok, trainer = hf_tokenizer(a.vocab)
        tok.train_from_iterator(texts, trainer)
        return tok
    t_hf1, _ = best(lambda: train_hf([corpus]), a.repeat)
    t_hfp, hf = best(lambda: train_hf(paras), a.repeat)
    t_hf = min(t_hf1, t_hfp)
    assert hf.get_vocab_size() == ours.vocab_size == a.vocab

    def encode_ours():
        ours._cache.clear()  # no help from earlier runs
        return ours.encode(corpus)
    enc = ours.to_tiktoken()
    e_ours, ids = best(encode_ours, a.repeat)
    e_tik, ids_tik = best(lambda: enc.encode_ordinary(corpus), a.repeat)
    e_hf, hf_ids = best(lambda: hf.encode(corpus).ids, a.repeat)
    e_hfb, hf_batch = best(lambda: hf.encode_batch(paras), a.repeat)
    assert ids == ids_tik, 'our encode and to_tiktoken() disagree'
    n_hf = len(hf_ids)

    print(f'\ntraining (vocab {a.vocab})')
    print(f'  ours        {t_ours:7.2f} s')
    print(f'  tokenizers  {t_hf1:7.2f} s  (one string)')
    print(f'  tokenizers  {t_hfp:7.2f} s  ({len(paras):,} paragraphs)')
    print(f'  ratio ours/tokenizers (best of its two): {t_ours / t_hf:.2f}x  '
          '(goal <= 5x)')
    print('\ncompression on the training corpus (bytes per token)')
    print(f'  ours        {nbytes / len(ids):7.3f}  ({len(ids):,} tokens)')
    print(f'  tokenizers  {nbytes / n_hf:7.3f}  ({n_hf:,} tokens)')
    print(f'  token count ours/tokenizers: {len(ids) / n_hf:.4f}  '
          f'(goal within 2%)')
    print('\nencoding the corpus')
    print(f'  ours encode            {e_ours:7.2f} s')
    print(f'  ours to_tiktoken()     {e_tik:7.2f} s  (ids identical to encode)')
    print(f'  tokenizers encode      {e_hf:7.2f} s  (one string)')
    print(f'  tokenizers encode_batch{e_hfb:7.2f} s  ({len(paras):,} paragraphs)')
    hf_best = min(e_hf, e_hfb)
    print(f'  ratio ours/tokenizers (best of its two): {e_ours / hf_best:.2f}x')
    print(f'  ratio to_tiktoken/tokenizers: {e_tik / hf_best:.2f}x  '
          f'(goal <= 1x)')


if __name__ == '__main__':
    main()
