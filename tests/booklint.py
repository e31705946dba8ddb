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
    "Each chapter's H1 carries its label, sec-<module>, so prose can say @sec-model and get 'Chapter 7'."
    probs = []
    for nb in notebooks(root):
        if nb.name == 'index.ipynb': continue
        want = chapter_id(_module(nb) or '?')
        for c in cells(nb):
            if c['cell_type'] != 'markdown': continue
            for l in re.sub(r'```.*?```', '', src(c), flags=re.S).splitlines():
                if l.startswith('# ') and not l.endswith(f' {{#{want}}}'):
                    probs.append(f"{nb.name}: the H1 '{l}' must end with {{#{want}}}")
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
            if m := re.search(r'^#\|\s*exports?i?\s+([\w.]+)\s*$', src(c), re.M): exp[m.group(1)] = nb.name
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


# ---- What the render showed (issue #13): checks that stand in for Quarto + LaTeX ----

import ast
from html.parser import HTMLParser

MAX_OUT = 88     # monospace characters that fit the A4 text block at \small
MAX_TABLE = 80   # estimated characters of a table row (cells + 2 per column)
RICH = ('image/png', 'image/svg+xml', 'text/html', 'text/markdown', 'text/latex')
FM_LINE = re.compile(r'^-\s+\S.*:.*\S\s*$')      # nbdev's `- key: value` front matter


def _directives(s):
    return {l[2:].strip().split(':')[0].split()[0] for l in s.splitlines()
            if l.startswith('#|') and l[2:].strip()}


def _title_cell(nb):
    "Index of the markdown cell nbdev turns into front matter (its first H1), or None."
    for i, c in enumerate(cells(nb)):
        if c['cell_type'] == 'markdown' and re.match(r'#\s+\S', src(c)): return i
    return None


FRONT_MATTER = '---\ntitle: null\nskip_showdoc: true\n---'


def check_title_cells(root):
    """A raw front-matter cell (`title: null`, `skip_showdoc: true`) comes right before the title cell,
    which holds only the H1 and one `>` summary line. With a title already set, nbdev leaves the H1 in
    the text, where Quarto numbers it and reads its label; the `>` line prints as the chapter's epigraph."""
    probs = []
    for nb in notebooks(root):
        cs = cells(nb)
        i = _title_cell(nb)
        if i is None: probs.append(f"{nb.name}: no title cell (a markdown cell with an H1)"); continue
        if any(c['cell_type'] == 'markdown' for c in cs[:i]):
            probs.append(f"{nb.name}: a markdown cell comes before the title cell")
        if i == 0 or cs[i - 1]['cell_type'] != 'raw' or src(cs[i - 1]).strip() != FRONT_MATTER:
            probs.append(f"{nb.name}: the cell before the title must be the raw front matter {FRONT_MATTER!r} "
                         "(else nbdev moves the H1 into the title and its label is lost)")
        lines = [l for l in src(cs[i]).splitlines() if l.strip()]
        if not lines[0].startswith('# '): probs.append(f"{nb.name}: the title cell must start with its H1")
        if nb.name == 'index.ipynb':
            if lines[0] != '# Preface {.unnumbered}': probs.append("index.ipynb: must open with '# Preface {.unnumbered}'")
            continue
        quotes = [l for l in lines[1:] if l.startswith('>')]
        if len(quotes) != 1: probs.append(f"{nb.name}: the title cell needs exactly one `>` summary line (nbdev makes it the module docstring)")
        for l in lines[1:]:
            if not l.startswith('>'): probs.append(f"{nb.name}: the title cell holds more than its H1 and summary: {l[:60]!r}")
    return probs


def _has(tree, types): return any(isinstance(n, types) for n in ast.walk(tree))


def check_imports(root):
    "No cell mixes imports with other code: nbdev would re-execute it at docs time."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            s = src(c)
            if c['cell_type'] != 'code' or not s.strip(): continue
            d = _directives(s)
            if d & {'export', 'exports', 'exporti', 'exec_doc'}: continue   # run at docs time anyway
            if re.search(r'^#\|\s*eval:\s*false', s, re.M): continue
            try: tree = ast.parse('\n'.join(l for l in s.splitlines() if not l.lstrip().startswith(('%', '!'))))
            except SyntaxError: probs.append(f"{nb.name} cell {i}: does not parse"); continue
            if _has(tree, (ast.Import, ast.ImportFrom)) and _has(tree, (ast.Expr, ast.Assign)):
                probs.append(f"{nb.name} cell {i}: mixes imports with other code; give the imports a cell of their own")
    return probs


def _shown(s):
    "Is a code cell's output shown on the page?"
    d = [l.replace(' ', '') for l in s.splitlines() if l.startswith('#|')]
    return not any(o in ('#|hide', '#|include:false', '#|output:false') for o in d)


def _asis(s): return bool(re.search(r'^#\|\s*output:\s*asis', s, re.M))


def _verbatim_texts(c):
    "Outputs the PDF prints as verbatim text: streams, and plain results with no richer form."
    if _asis(src(c)): return   # printed markdown: it wraps like prose
    for o in c.get('outputs', []):
        if o.get('output_type') == 'stream': yield ''.join(o['text'])
        elif 'data' in o and not any(k in o['data'] for k in RICH):
            v = o['data'].get('text/plain', '')
            yield ''.join(v) if isinstance(v, list) else v


def check_output_width(root, width=MAX_OUT):
    "Text outputs fit the page at \\small: at most 88 characters a line."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            if c['cell_type'] != 'code' or not _shown(src(c)): continue
            for t in _verbatim_texts(c):
                for l in t.splitlines():
                    if len(l.expandtabs()) > width:
                        probs.append(f"{nb.name} cell {i}: output line of {len(l)} chars: {l[:50]!r}...")
    return probs


class _Table(HTMLParser):
    def __init__(self):
        super().__init__(); self.rows, self.cell, self.spans = [], None, False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'tr': self.rows.append([])
        if tag in ('td', 'th'):
            self.cell = ''
            if int(a.get('rowspan') or 1) > 1 or int(a.get('colspan') or 1) > 1: self.spans = True
    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self.cell is not None:
            if not self.rows: self.rows.append([])
            self.rows[-1].append(self.cell.strip()); self.cell = None
    def handle_data(self, d):
        if self.cell is not None: self.cell += d


def table_width(html_text):
    "(estimated characters per row, has row/column spans) of an HTML table."
    t = _Table(); t.feed(html_text)
    rows = [r for r in t.rows if r]
    if not rows: return 0, t.spans
    w = [0] * max(map(len, rows))
    for r in rows:
        for j, x in enumerate(r): w[j] = max(w[j], len(x))
    return sum(w) + 2 * len(w), t.spans


def check_tables(root, width=MAX_TABLE):
    "Tables in outputs fit the page: no spanning cells (LaTeX \\multirow), about 80 characters wide."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            if c['cell_type'] != 'code' or not _shown(src(c)): continue
            for o in c.get('outputs', []):
                h = o.get('data', {}).get('text/html', '')
                h = ''.join(h) if isinstance(h, list) else h
                if '<table' not in h: continue
                w, spans = table_width(h)
                if spans: probs.append(f"{nb.name} cell {i}: table with spanning cells (a MultiIndex?): flatten it")
                if w > width: probs.append(f"{nb.name} cell {i}: table about {w} characters wide (max {width}): transpose or split it")
    return probs


def _font_cmap(name):
    "Code points of one of the DejaVu fonts that matplotlib ships (the PDF uses the same fonts)."
    import matplotlib
    from fontTools.ttLib import TTFont
    f = Path(matplotlib.get_data_path())/'fonts'/'ttf'/name
    return set(TTFont(f).getBestCmap())


PROSE_FONT, MONO_FONT = 'DejaVuSerif.ttf', 'DejaVuSansMono.ttf'   # mainfont / monofont in _quarto.yml
CODE_SPAN = re.compile(r'```.*?```|`[^`\n]*`', re.S)
MATH = re.compile(r'\$\$.*?\$\$|\$[^$\n]+\$', re.S)


def check_glyphs(root):
    "Every character on the page is in the PDF's fonts: DejaVu Serif for prose, DejaVu Sans Mono for code."
    prose_ok, mono_ok = _font_cmap(PROSE_FONT), _font_cmap(MONO_FONT)
    probs = []
    def bad(text, ok, where):
        miss = sorted({ch for ch in text if ord(ch) not in ok and ch not in '\n\r\t'})
        if miss: probs.append(f"{where}: characters the PDF font lacks: {' '.join(f'U+{ord(ch):04X}' for ch in miss)}")
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            s, where = src(c), f"{nb.name} cell {i}"
            if c['cell_type'] == 'markdown':
                bad(''.join(CODE_SPAN.findall(s)), mono_ok, where + ' (code)')
                bad(MATH.sub('', CODE_SPAN.sub('', s)), prose_ok, where)
            elif c['cell_type'] == 'code' and _shown(s):
                if not _hidden(s): bad(s, mono_ok, where + ' (code)')
                if _asis(s):
                    t = ''.join(''.join(o.get('text', '')) for o in c.get('outputs', []))
                    bad(''.join(CODE_SPAN.findall(t)), mono_ok, where + ' (output code)')
                    bad(MATH.sub('', CODE_SPAN.sub('', t)), prose_ok, where + ' (output)')
                bad(''.join(_verbatim_texts(c)), mono_ok, where + ' (output)')
                for o in c.get('outputs', []):
                    h = o.get('data', {}).get('text/html', '')
                    bad(re.sub(r'<[^>]+>', '', ''.join(h) if isinstance(h, list) else h), prose_ok, where + ' (table)')
    return probs


def check_no_stderr(root):
    "No warnings or other stderr stored in outputs: a reader would see them on the page."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            for o in c.get('outputs', []):
                t = ''.join(o.get('text', '')) if o.get('output_type') == 'stream' else ''
                if o.get('name') == 'stderr': probs.append(f"{nb.name} cell {i}: stderr stored: {t[:60]!r}")
                elif re.search(r'\b\w*Warning: ', t): probs.append(f"{nb.name} cell {i}: a warning stored: {t[:60]!r}")
    return probs


ALL_CHECKS += [check_title_cells, check_imports, check_output_width, check_tables, check_glyphs, check_no_stderr]


# ---- Figures (issue #16): counted, referenced, and at least half of them diagrams ----

FIG_LABEL = re.compile(r'^#\|\s*label:\s*(fig-[\w-]+)', re.M)
DRAW = ('diagram', 'box', 'arrow', 'grid')     # llmbook.figures' diagram helpers
FIG_MIN = {'setup': 2, 'part': 4, 'appendix': 2}
FIG_TOTAL = 70


def _calls(tree):
    return {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
            for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, (ast.Name, ast.Attribute))}


def figures(nb_path):
    "[(label, is_diagram)] for a notebook: a diagram is drawn with the diagram helpers."
    cs = [c for c in cells(nb_path) if c['cell_type'] == 'code']
    trees = []
    for c in cs:
        try: trees.append(ast.parse('\n'.join(l for l in src(c).splitlines() if not l.lstrip().startswith(('%', '!')))))
        except SyntaxError: trees.append(ast.Module(body=[], type_ignores=[]))
    drawers, grew = set(DRAW), True
    while grew:   # functions of the chapter that draw with the helpers (or with such functions)
        grew = False
        for t in trees:
            for f in ast.walk(t):
                if isinstance(f, ast.FunctionDef) and f.name not in drawers and _calls(f) & drawers:
                    drawers.add(f.name); grew = True
    return [(m.group(1), bool(_calls(t) & drawers)) for c, t in zip(cs, trees)
            for m in FIG_LABEL.finditer(src(c))]


def chapter_kind(root, name):
    "'setup', 'part', 'appendix' or None (preface, CLI reference): what the figure minimum is."
    book = yaml.safe_load((Path(root)/'_quarto.yml').read_text())['book']
    if name in book.get('appendices', []): return None if name == 'D_cli.ipynb' else 'appendix'
    for e in book.get('chapters', []):
        if isinstance(e, dict) and name in e.get('chapters', []): return 'part'
    return None if name == 'index.ipynb' else 'setup'


def check_figure_refs(root):
    "Every labelled figure has a caption and is referred to as @fig-... in the prose."
    labels, refs = labels_and_refs(root)
    refd = {r for _, r in refs}
    probs = []
    for nb in notebooks(root):
        for c in cells(nb):
            s = src(c)
            for m in FIG_LABEL.finditer(s):
                if m.group(1) not in refd: probs.append(f"{nb.name}: figure {m.group(1)} is never referred to (@{m.group(1)})")
                if not re.search(r'^#\|\s*fig-cap:\s*\S', s, re.M): probs.append(f"{nb.name}: figure {m.group(1)} has no fig-cap")
    return probs


def figure_counts(root):
    "{notebook: (figures, diagrams, minimum)} for every chapter in the book."
    out = {}
    for f in quarto_files(root):
        figs = figures(Path(root)/'nbs'/f)
        out[f] = (len(figs), sum(d for _, d in figs), FIG_MIN.get(chapter_kind(root, f), 0))
    return out


def check_figure_counts(root):
    "Enough figures in every chapter, 70 in all, and at least half of them diagrams."
    counts, probs = figure_counts(root), []
    for f, (n, d, lo) in counts.items():
        if n < lo: probs.append(f"{f}: {n} figures, fewer than {lo}")
    n, d = sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())
    if n < FIG_TOTAL: probs.append(f"the book has {n} figures, fewer than {FIG_TOTAL}")
    if 2 * d < n: probs.append(f"only {d} of {n} figures are diagrams, fewer than half")
    return probs


ALL_CHECKS += [check_figure_refs]


# ---- One notebook, one module, and dependencies point backwards (issue #14) ----

MAX_MODULE_LINES = 700


def module_order(root):
    "Modules in book order (the order of _quarto.yml)."
    out = []
    for f in quarto_files(root):
        for c in cells(Path(root)/'nbs'/f):
            if m := re.search(r'^#\|\s*default_exp\s+(\S+)', src(c), re.M): out.append(m.group(1))
    return out


def check_module_order(root):
    "No module imports one that comes later in the book, and none is longer than ~700 lines."
    order, probs = module_order(root), []
    pos = {m: i for i, m in enumerate(order)}
    for m in order:
        py = Path(root)/'llmbook'/(m.replace('.', '/') + '.py')
        if not py.exists(): continue
        text = py.read_text()
        deps = re.findall(r'^\s*(?:from|import)\s+(?:llmbook\.|\.)(\w+)', text, re.M)
        for dep in sorted(set(deps)):  # `from llmbook.x` and the exported `from .x`
            if dep in pos and pos[dep] > pos[m]: probs.append(f"llmbook.{m} imports llmbook.{dep}, which comes later in the book")
        if (n := len(text.splitlines())) > MAX_MODULE_LINES: probs.append(f"llmbook/{py.name} has {n} lines (max {MAX_MODULE_LINES}): split it by concern")
    return probs


def _defines(py:Path) -> set:
    "Names module file `py` defines at top level (not the ones it imports)."
    import ast
    out = set()
    for n in ast.parse(py.read_text()).body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.add(n.name)
        elif isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                out |= {e.id for e in ast.walk(t) if isinstance(e, ast.Name)}
    return out


# nbs/14_scaling.ipynb is edited elsewhere (issue #24's other half): it should import
# atomic_write from llmbook.core; drop this entry when it does.
THROUGH_PENDING = set()  # names still imported through another module


def check_import_sources(root):
    "Every `from llmbook.x import name` (or `from .x`) names the module that defines `name`."
    import ast
    pkg, probs, defs = Path(root)/'llmbook', [], {}
    for py in sorted(pkg.glob('*.py')):
        if py.name == '_modidx.py': continue
        for n in ast.walk(ast.parse(py.read_text())):
            if not isinstance(n, ast.ImportFrom) or not n.module: continue
            mod = n.module if n.level == 0 else 'llmbook.' + n.module
            if not mod.startswith('llmbook.') or not (src := pkg/(mod[8:] + '.py')).exists(): continue
            if src not in defs: defs[src] = _defines(src)
            for a in n.names:
                if a.name != '*' and a.name not in defs[src] and \
                        (py.name, a.name) not in THROUGH_PENDING:
                    probs.append(f"llmbook/{py.name}:{n.lineno} imports {a.name} through {mod}, "
                                 f"which does not define it: import it from its own module")
    return probs


ALL_CHECKS += [check_module_order, check_import_sources]


# ---- What our own render showed (issue #22): the page, the numbering, pandoc's traps ----

import base64, struct

BLOCK_IN = 5.81        # the PDF text block (418 pt of A4 scrbook), in inches
PX_PER_IN = 96         # Quarto and HTML take an inch to be 96 pixels
MIN_FONT = 7           # points, at print size


def image_widths(c):
    "Display width in pixels of every PNG a cell stored: what Quarto turns into inches."
    for o in c.get('outputs', []):
        png = o.get('data', {}).get('image/png')
        if not png: continue
        w = o.get('metadata', {}).get('image/png', {}).get('width')
        if w is None:   # no display width stored: Quarto uses the PNG's own pixels
            w = struct.unpack('>I', base64.b64decode(''.join(png))[16:20])[0]
        yield w


def check_figure_width(root, block=BLOCK_IN):
    "Every stored figure prints within the text block (and so fits the HTML column)."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            for w in image_widths(c):
                if w > block * PX_PER_IN:
                    probs.append(f"{nb.name} cell {i}: a figure {w} px = {w / PX_PER_IN:.2f} in wide "
                                 f"(the text block is {block} in): draw it at figsize width <= WIDTH")
    return probs


FONTSIZE_RE = re.compile(r'\b(?:fontsize|size|labelsize)\s*=\s*([0-9.]+)')
FIGSIZE_RE = re.compile(r'figsize\s*=\s*\(\s*([0-9.]+)\s*,')


def check_figure_fonts(root, block=BLOCK_IN, smallest=MIN_FONT):
    "Figures are drawn for the page: no literal font under 7 pt, no literal width past the block."
    probs = []
    for p in notebooks(root):
        for i, c in enumerate(cells(p)):
            if c['cell_type'] != 'code': continue
            for m in FONTSIZE_RE.finditer(src(c)):
                if float(m.group(1)) < smallest: probs.append(f"{p.name} cell {i}: {m.group(0)} is under {smallest} pt")
            for m in FIGSIZE_RE.finditer(src(c)):
                if float(m.group(1)) > block: probs.append(f"{p.name} cell {i}: {m.group(0)} is wider than the {block} in block")
    return probs


CHAPTER_RE = re.compile(r'\b[Cc]hapters?\s+\d+[a-z]?\b')


def _prose(md):
    "Markdown with code blocks and inline code removed."
    md = re.sub(r'```.*?```', '', md, flags=re.S)
    return re.sub(r'`[^`]*`', '', md)   # inline code may wrap a line


def _comments(code):
    "The comments of a code cell (not its strings)."
    import io, tokenize
    try: return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError): return re.findall(r'#.*', code)


def check_chapter_numbers(root):
    "Prose and comments point at chapters with @sec-…, never a bare 'chapter N' that the numbering can break."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            texts = [_prose(src(c))] if c['cell_type'] == 'markdown' else _comments(src(c)) if c['cell_type'] == 'code' else []
            for t in texts:
                for m in CHAPTER_RE.finditer(t):
                    probs.append(f"{nb.name} cell {i}: bare {m.group(0)!r}: write @sec-<chapter> (or a module name in code)")
    return probs


LIST_ITEM_RE = re.compile(r'^[ \t]*(?:[-*+]|\d+[.)])[ \t]+')
AT_START_RE = re.compile(r'^\(?@[\w-]')


def example_list_traps(md):
    "Lines pandoc would read as an example-list marker: `(@label)` opening a block, or `@`/`(@` opening a line of a list."
    out = []
    for block in re.split(r'\n[ \t]*\n', md):
        lines = block.splitlines()
        if not lines: continue
        if lines[0].lstrip().startswith('(@'): out.append(lines[0])
        if not LIST_ITEM_RE.match(lines[0]): continue
        for l in lines:
            if AT_START_RE.match(LIST_ITEM_RE.sub('', l, count=1).lstrip()): out.append(l)
    return out


DASH_RE = re.compile(r'(?<![-!<])--(?![->])')


def _captions(s): return re.findall(r'^#\|\s*(?:fig|tbl)-cap:\s*(.*)$', s, re.M)


def _markdown_outputs(c):
    "Outputs that reach the page as markdown: text/markdown, and printed text under `output: asis`."
    for o in c.get('outputs', []):
        if v := o.get('data', {}).get('text/markdown'): yield ''.join(v)
        elif _asis(src(c)) and o.get('output_type') == 'stream': yield ''.join(o['text'])


def check_pandoc_traps(root):
    "No list-item line that starts with @ or (@ (pandoc's example lists eat it), no -- that smart punctuation turns into a dash."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            s = src(c)
            texts = [_prose(s)] if c['cell_type'] == 'markdown' else [re.sub(r'`[^`]*`', '', t) for t in _captions(s)]
            if c['cell_type'] == 'code':
                for t in _markdown_outputs(c):
                    if sum(l.startswith('```') for l in t.splitlines()) % 2:
                        probs.append(f"{nb.name} cell {i}: a code fence in the output is never closed (it swallows the page after it)")
                    texts.append(_prose(t))
            for t in texts:
                if c['cell_type'] == 'markdown':
                    for l in example_list_traps(t): probs.append(f"{nb.name} cell {i}: pandoc reads this line as an example list: {l.strip()[:50]!r}")
                t = re.sub(r'<!--.*?-->', '', t, flags=re.S)
                for l in t.splitlines():
                    if re.match(r'^\s*(?:---+|\|?[-:| ]+\|)\s*$', l): continue   # rules and table rows
                    if DASH_RE.search(l): probs.append(f"{nb.name} cell {i}: '--' outside code becomes a dash: {l.strip()[:60]!r}")
    return probs


def _module(nb):
    for c in cells(nb):
        if m := re.search(r'^#\|\s*default_exp\s+(\S+)', src(c), re.M): return m.group(1)


def chapter_id(module): return 'sec-' + module.replace('_', '-').replace('.', '-')


RAW_NOTATION_RE = re.compile(r'\w_\(|\w_\{|\w\^\{|·')


def check_captions(root):
    "Captions hold no raw notation: math goes in $…$."
    probs = []
    for nb in notebooks(root):
        for i, c in enumerate(cells(nb)):
            for cap in _captions(src(c)):
                plain = re.sub(r'\$[^$]*\$|`[^`]*`', '', cap)
                if m := RAW_NOTATION_RE.search(plain): probs.append(f"{nb.name} cell {i}: raw notation {plain[max(0, m.start()-8):m.end()+8]!r} in a caption: write it as $math$")
    return probs


def check_typography(root):
    "The PDF settings the render needed: a third LaTeX pass for KOMA's contents, captions without a double stop."
    probs = []
    q = yaml.safe_load((Path(root)/'_quarto.yml').read_text())
    pdf = q['format']['pdf']
    if int(pdf.get('latex-min-runs', 1)) < 3: probs.append("_quarto.yml: pdf needs latex-min-runs: 3 (KOMA's dynnumwidth settles on the third pass)")
    if 'numbers=noenddot' not in (pdf.get('classoption') or []): probs.append("_quarto.yml: pdf classoption needs numbers=noenddot ('Figure 1.1.:' otherwise)")
    if 'add_links' not in (_settings(root).get('skip_procs') or ''): probs.append("settings.ini: skip_procs must hold add_links (nbdev's identifier links point to anchors the book has not)")
    return probs


def _settings(root):
    import configparser
    cp = configparser.ConfigParser(); cp.read(Path(root)/'settings.ini')
    return cp['DEFAULT']


ALL_CHECKS += [check_figure_width, check_figure_fonts, check_chapter_numbers, check_pandoc_traps,
               check_captions, check_typography]


def check_duplicate_cells(root):
    "No code cell repeats an earlier one word for word (a pasted cell defines, prints and tests twice)."
    probs = []
    for nb in notebooks(root):
        seen = {}
        for i, c in enumerate(cells(nb)):
            s = src(c).strip()
            if c['cell_type'] != 'code' or len(s.splitlines()) < 3: continue
            if s in seen: probs.append(f"{nb.name} cell {i} repeats cell {seen[s]}")
            else: seen[s] = i
    return probs


ALL_CHECKS += [check_duplicate_cells]
