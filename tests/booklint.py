"""Book lint: the checks that stand in for rendering the book with Quarto here.

Each function takes the project root and returns a list of problems (empty: fine),
so the tests can run them on the real book and on deliberately broken copies.
"""
import json, re
from pathlib import Path
import yaml

LABEL_RE = re.compile(r'\{#((?:sec|fig|tbl|eq)-[\w-]+)[^}]*\}')
REF_RE = re.compile(r'(?<![\w/.-])@((?:sec|fig|tbl|eq)-[\w-]*\w)')
CELL_LABEL_RE = re.compile(r'^#\|\s*label:\s*((?:fig|tbl)-[\w-]+)', re.M)
ABS_PATH_RE = re.compile(r'(?<![\w.~])(/(?:root|home|tmp|work|Users|private|var/folders)/'
                         r'|[A-Z]:\\\\)')
ADDR_RE = re.compile(r'\bat 0x[0-9a-fA-F]{6,}|\b0x[0-9a-fA-F]{8,}\b')
MAX_CODE = 80


def notebooks(root):
    "The book's notebooks: every nbs/*.ipynb not starting with '_'."
    return sorted(p for p in (Path(root)/'nbs').glob('*.ipynb') if not p.name.startswith('_'))


def cells(nb_path):
    return json.loads(Path(nb_path).read_text())['cells']


def src(c):
    return ''.join(c['source'])


def quarto_files(root):
    "Chapter files listed in _quarto.yml, in order (chapters, parts, appendices)."
    book = yaml.safe_load((Path(root)/'_quarto.yml').read_text())['book']
    out = []
    for entry in book.get('chapters', []) + book.get('appendices', []):
        if isinstance(entry, str): out.append(entry)
        else: out += list(entry.get('chapters', []))
    return out


def check_listed(root):
    "Every notebook is listed in _quarto.yml, once, and every listed file exists."
    listed, probs = quarto_files(root), []
    for f in sorted(set(f for f in listed if listed.count(f) > 1)):
        probs.append(f"{f} is listed more than once in _quarto.yml")
    for f in listed:
        if not (Path(root)/'nbs'/f).exists(): probs.append(f"_quarto.yml lists {f}, which does not exist in nbs/")
    for nb in notebooks(root):
        if nb.name not in listed: probs.append(f"nbs/{nb.name} is not listed in _quarto.yml")
    return probs


def _hidden(s):
    d = [l.replace(' ', '') for l in s.splitlines() if l.startswith('#|')]
    return any(o in ('#|hide', '#|echo:false', '#|include:false') for o in d)


def labels_and_refs(root):
    "All cross-reference labels defined, and all references made, across the book."
    labels, refs = {}, []
    for nb in notebooks(root):
        for c in cells(nb):
            s = src(c)
            if c['cell_type'] == 'markdown':
                for m in LABEL_RE.finditer(s): labels.setdefault(m.group(1), []).append(nb.name)
                body = re.sub(r'```.*?```', '', s, flags=re.S)
                body = re.sub(r'`[^`\n]*`', '', body)
                refs += [(nb.name, m.group(1)) for m in REF_RE.finditer(body)]
            elif c['cell_type'] == 'code':
                for m in CELL_LABEL_RE.finditer(s): labels.setdefault(m.group(1), []).append(nb.name)
    return labels, refs


def check_refs(root):
    "Every @sec-/@fig-/@tbl-/@eq- reference resolves to exactly one label."
    labels, refs = labels_and_refs(root)
    probs = [f"label {k} is defined more than once ({', '.join(v)})" for k, v in labels.items() if len(v) > 1]
    probs += [f"{nb}: @{r} does not resolve to any label" for nb, r in refs if r not in labels]
    return probs


def check_h1(root):
    "No label on a chapter's H1: nbdev moves the H1 into the title, label and all."
    probs = []
    for nb in notebooks(root):
        for c in cells(nb):
            if c['cell_type'] != 'markdown': continue
            for l in src(c).splitlines():
                if l.startswith('# ') and '{#' in l: probs.append(f"{nb.name}: label on the H1 '{l}'")
    return probs


def check_code_width(root, width=MAX_CODE):
    "Visible code lines (code cells and fenced blocks in markdown) fit the PDF page."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            s = src(c)
            if c['cell_type'] == 'code':
                if _hidden(s): continue
                lines = s.splitlines()
            else:
                lines = [l for b in re.findall(r'```[^\n]*\n(.*?)```', s, flags=re.S) for l in b.splitlines()]
            for l in lines:
                if l.startswith('#|'): continue  # cell options: not shown
                if len(l) > width: probs.append(f"{nb.name} cell {i}: {len(l)} chars: {l[:60]}...")
    return probs


def _output_texts(c):
    for o in c.get('outputs', []):
        if 'text' in o: yield ''.join(o['text'])
        for k, v in o.get('data', {}).items():
            if k.startswith('text/') or k.endswith('json'): yield ''.join(v) if isinstance(v, list) else str(v)
        if 'traceback' in o: yield '\n'.join(o['traceback'])


def check_outputs(root):
    "Stored outputs hold no absolute paths, memory addresses or errors."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            if c['cell_type'] != 'code': continue
            for o in c.get('outputs', []):
                if o.get('output_type') == 'error': probs.append(f"{nb.name} cell {i}: stored error output")
            for t in _output_texts(c):
                if m := ABS_PATH_RE.search(t): probs.append(f"{nb.name} cell {i}: absolute path {t[m.start():m.start()+40]!r}")
                if m := ADDR_RE.search(t): probs.append(f"{nb.name} cell {i}: memory address {m.group(0)!r}")
    return probs


def check_modules(root):
    "Every module in llmbook/ is exported from a notebook, and every export target exists."
    root = Path(root)
    exp = {}
    for nb in notebooks(root):
        for c in cells(nb):
            if m := re.search(r'^#\|\s*default_exp\s+(\S+)', src(c), re.M): exp[m.group(1)] = nb.name
    probs = []
    for py in sorted((root/'llmbook').rglob('*.py')):
        mod = py.relative_to(root/'llmbook').with_suffix('').as_posix().replace('/', '.')
        if mod in ('__init__', '_modidx'): continue
        if mod not in exp: probs.append(f"llmbook/{py.name} does not come from any notebook")
        elif 'AUTOGENERATED' not in ''.join(py.read_text().splitlines(True)[:4]): probs.append(f"llmbook/{py.name} lacks nbdev's header")
    for mod, nb in exp.items():
        if not (root/'llmbook'/(mod.replace('.', '/') + '.py')).exists(): probs.append(f"{nb} exports {mod}, which is missing: run nbdev_export")
    return probs


ALL_CHECKS = [check_listed, check_refs, check_h1, check_code_width, check_outputs, check_modules]
