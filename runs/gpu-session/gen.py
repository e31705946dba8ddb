"Samples from finished runs through `llmbook generate`, one JSON line each."
import io, json, sys, contextlib, pathlib
from llmbook.cli import main
out, dev, n_seeds, toks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(out, 'a') as f:
    for ck in sys.argv[5:]:
        if not (pathlib.Path(ck)/'meta.json').exists(): continue
        step = json.loads((pathlib.Path(ck)/'meta.json').read_text())['step']
        for seed in range(n_seeds):
            argv = ['generate', '--ckpt', ck, '--max-new-tokens', toks,
                    '--seed', str(seed), '--device', dev]
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf): main(argv)
            f.write(json.dumps(dict(command='llmbook ' + ' '.join(argv),
                    ckpt=ck, step=step, seed=seed, text=buf.getvalue()[:-1])) + '\n')
            f.flush()
        print('generated', ck, 'step', step, flush=True)
