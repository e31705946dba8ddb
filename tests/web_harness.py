"""Running the book's web module from tests: in Node (onnxruntime-node) and in
headless Chromium (playwright-core driving /usr/bin/chromium), from the page's
own widget HTML (cut from nbs/C_web.ipynb) served on 127.0.0.1."""
import contextlib, functools, json, os, re, shutil, socket, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT/'web'                          # package.json, node_modules, the drivers
BUNDLE = ROOT/'nbs'/'web'/'austen-tiny'   # the committed export
CHROMIUM = os.environ.get('CHROMIUM', '/usr/bin/chromium')
ORT_DIR = 'node_modules/onnxruntime-web/dist/'   # served from web/node_modules


def missing_tools(browser:bool=False) -> list[str]:
    "What the web tests need and this machine lacks, each with its fix."
    out = []
    if not shutil.which('node'): out.append('node is not installed (apt-get install -y nodejs npm)')
    if not (WEB/'node_modules'/'onnxruntime-node').is_dir():
        out.append('web/node_modules is missing: run `npm ci` in web/')
    if browser and not Path(CHROMIUM).exists() and not shutil.which('chromium'):
        out.append(f'{CHROMIUM} is missing (apt-get install -y chromium)')
    return out


def run_json(cmd:list, req:dict, timeout:float=300) -> dict:
    "Run a Node driver with `req` as a JSON file; its JSON answer."
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump(req, f)
    try:
        r = subprocess.run(cmd + [f.name], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    finally: os.unlink(f.name)
    if r.returncode: raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def node_check(req:dict, bundle:Path=BUNDLE) -> dict:
    "web/check.mjs on `bundle`: prefill logits, greedy ids, passage ids."
    return run_json(['node', 'web/check.mjs', str(bundle)], req)


def widget_html(nb:Path=ROOT/'nbs'/'C_web.ipynb') -> str:
    "The raw HTML block of the book page: the widget and its module script."
    for c in json.loads(nb.read_text())['cells']:
        s = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and 'id="llmbook-web"' in s:
            return re.search(r'```\{=html\}\n(.*?)```', s, re.S).group(1)
    raise LookupError(f"{nb} has no widget")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@contextlib.contextmanager
def serve_page():
    "A static server on 127.0.0.1 with the page as index.html; yields its URL."
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d/'index.html').write_text('<!doctype html><html><head><meta charset="utf-8">'
            '<link rel="icon" href="data:,"><title>llmbook web</title></head><body>\n'
            + widget_html() + '</body></html>\n')
        (d/'web').symlink_to(ROOT/'nbs'/'web')            # as in the book: web/ beside the page
        (d/'node_modules').symlink_to(WEB/'node_modules')  # onnxruntime-web, offline
        port = _free_port()
        p = subprocess.Popen([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1',
                              '--directory', str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), 0.1): break
                time.sleep(0.05)
            yield f'http://127.0.0.1:{port}/index.html?ort={ORT_DIR}'
        finally:
            p.terminate(); p.wait(10)


def browser_run(req:dict) -> dict:
    "web/browser.mjs on the served page: ids, first-token ms, tokens/s per run."
    with serve_page() as url:
        return run_json(['node', 'web/browser.mjs', url], req)


@functools.cache
def torch_reference():
    "(model, tokenizer, manifest) of the committed bundle, the model rebuilt in PyTorch."
    from llmbook.model import GPTConfig
    from llmbook.tokenizer import BPETokenizer
    from llmbook.web import gpt_from_onnx
    man = json.loads((BUNDLE/'manifest.json').read_text())
    cfg = GPTConfig(**{k: v for k, v in man['config'].items() if k != 'head_dim'})
    tok = BPETokenizer.load(ROOT/'runs'/man['run']['name']/'tokenizer.txt')
    return gpt_from_onnx(BUNDLE/'model.onnx', cfg), tok, man
