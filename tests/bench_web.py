"""Speed of the book's model in headless Chromium, beside PyTorch on the same CPU.

    python tests/bench_web.py [--runs 3] [--screenshot nbs/web/widget.png]

Not a test (no timing is asserted): it prints the load time of the page, the time to the
first token after Generate is pressed, and tokens/s after it, for greedy decoding that
stays on the cache (50 tokens) and for a long run whose window slides (200 tokens); then
PyTorch's `generate` and onnxruntime for Python on the same model, one thread each.
Targets of issue #26: first token < 1 s, >= 50 tokens/s. --screenshot also saves the
widget after a sampled continuation, the figure the PDF shows in place of the widget."""
import argparse, json, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault('OMP_NUM_THREADS', '1')
from web_harness import BUNDLE, browser_run, missing_tools, torch_reference


def torch_rate(n:int, prompt:str, runs:int) -> tuple[float, float]:
    "PyTorch `generate` (greedy, KV cache, one thread): best (first-token s, tokens/s)."
    import torch
    from llmbook.generate import generate
    torch.set_num_threads(1)
    model, tok, _ = torch_reference()
    ids = torch.tensor([tok.encode(prompt)])
    best = (float('inf'), 0.0)
    for _ in range(runs):
        t = []
        t0 = time.perf_counter()
        generate(model, ids, n, temperature=0, on_token=lambda x: t.append(time.perf_counter()))
        best = (min(best[0], t[0] - t0), max(best[1], (n - 1) / (t[-1] - t[0])))
    return best


def ort_rate(n:int, prompt:str, runs:int) -> float:
    "onnxruntime for Python on the bundle, greedy while the cache holds: best tokens/s."
    from llmbook.web import ort_session, ort_generate
    model, tok, _ = torch_reference()
    sess, ids, best = ort_session(BUNDLE/'model.onnx'), tok.encode(prompt), 0.0
    n = min(n, model.cfg.context_len - len(ids) + 1)  # all on the cache
    for _ in range(runs):
        t0 = time.perf_counter(); ort_generate(sess, model.cfg, ids, n)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=3, help='presses of Generate per setting')
    ap.add_argument('--screenshot', help='also save the widget as this PNG')
    a = ap.parse_args()
    if miss := missing_tools(browser=True): sys.exit('; '.join(miss))
    prompt = torch_reference()[2]['checks']['prompt']
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    for n in (50, 200):
        r = browser_run(dict(prompt=prompt, n=n, temperature=0, runs=a.runs))
        first = [x['firstMs'] for x in r['runs']]; rate = [x['tokensPerS'] for x in r['runs']]
        print(f"chromium {r['browser']}, {n} greedy tokens: page load {r['loadMs']} ms (onnxruntime-web "
              f"+ bundle); first token {min(first):.1f} ms (cold {first[0]:.1f}); "
              f"{max(rate):.0f} tokens/s (runs: {', '.join(f'{x:.0f}' for x in rate)})")
    for n in (50, 200):
        f, t = torch_rate(n, prompt, a.runs)
        print(f"pytorch generate, {n} greedy tokens: first token {f * 1000:.1f} ms, {t:.0f} tokens/s")
    print(f"onnxruntime python, greedy on the cache: {ort_rate(50, prompt, a.runs):.0f} tokens/s")
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    if a.screenshot:
        r = browser_run(dict(prompt=prompt, n=100, temperature=0.8, topK=50, seed=0,
                             screenshot=str(Path(a.screenshot).resolve())))
        print(f"screenshot: {a.screenshot}")


if __name__ == '__main__':
    main()
