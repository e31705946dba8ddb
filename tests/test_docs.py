"""The docs step of the book build, run here without Quarto (issue #13).

`nbdev_docs` first pre-processes every notebook into `_proc/` (front matter, links,
show_doc cells) and then hands `_proc/` to Quarto. The pre-processing needs no Quarto:
run it the way `.ci/run` does and check that what Quarto would get has every word
of every notebook and exactly the outputs stored in it (nothing re-executed).
"""
import json, re, subprocess, sys
from pathlib import Path
import pytest
import booklint as bl

ROOT = Path(__file__).resolve().parents[1]
PROC = ("from nbdev.config import get_config; from nbdev.serve import proc_nbs; "
        "proc_nbs(get_config().nbs_path)")


@pytest.fixture(scope='module')
def proc():
    "Run nbdev's docs pre-processing (as .ci/run does): no error, no warning."
    r = subprocess.run([sys.executable, '-W', 'error', '-c', PROC], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.strip() == '', r.stderr[-3000:]
    return ROOT/'_proc'


def _cells(p): return json.loads(Path(p).read_text())['cells']


def _front_matter(cells):
    raw = [bl.src(c) for c in cells if c['cell_type'] == 'raw']
    import yaml
    return yaml.safe_load(raw[0].strip().strip('-')) if raw else {}


LINK = re.compile(r'\[(`[^`\n]+`)\]\([^)\s]*\)')   # nbdev links backticked names


def _norm(s): return ' '.join(LINK.sub(r'\1', s).split())


def paragraphs(cells):
    "Every markdown paragraph of a notebook, whitespace-normalised."
    out = []
    for c in cells:
        if c['cell_type'] != 'markdown': continue
        out += [_norm(p) for p in re.split(r'\n\s*\n', bl.src(c)) if p.strip()]
    return out


HIDDEN = {'export', 'exporti', 'hide', 'default_exp'}   # cells nbdev leaves off the page


@pytest.mark.parametrize('nb', bl.notebooks(ROOT), ids=lambda p: p.name)
def test_outputs_are_the_stored_ones(proc, nb):
    out = {c.get('id'): c for c in _cells(proc/nb.name)}
    for c in _cells(nb):
        if c['cell_type'] != 'code' or bl._directives(bl.src(c)) & HIDDEN: continue
        assert c.get('id') in out, f"{nb.name}: a code cell is missing from _proc: {bl.src(c)[:80]}"
        assert c.get('outputs', []) == out[c['id']].get('outputs', []), bl.src(c)[:200]


def _is_show_doc(c): return re.search(r'^show_doc\(', bl.src(c), re.M) is not None


def test_nothing_executes_at_docs_time(proc):
    "show_doc cells are added but never run: skip_showdoc is on in every chapter."
    for nb in bl.notebooks(ROOT):
        for c in _cells(proc/nb.name):
            if c['cell_type'] == 'code' and _is_show_doc(c): assert c.get('outputs', []) == []


def test_the_preface_is_a_preface(proc):
    cells = _cells(proc/'index.ipynb')
    assert _front_matter(cells)['title'] is None    # its heading stays a heading ...
    md = [bl.src(c) for c in cells if c['cell_type'] == 'markdown']
    assert any(m.startswith('# Preface {.unnumbered}\n') for m in md)   # ... unnumbered


@pytest.mark.parametrize('nb', bl.notebooks(ROOT), ids=lambda p: p.name)
def test_every_paragraph_reaches_quarto(proc, nb):
    """Every markdown paragraph of a chapter, its H1 and `>` summary included, is in what
    Quarto is given: nbdev turns a title cell into front matter unless the title is set."""
    given = set(paragraphs(_cells(proc/nb.name)))
    lost = [p for p in paragraphs(_cells(nb)) if p not in given]
    assert lost == [], lost[:3]


@pytest.mark.parametrize('nb', [n for n in bl.notebooks(ROOT) if n.name != 'index.ipynb'], ids=lambda p: p.name)
def test_chapters_keep_their_labelled_h1(proc, nb):
    "Quarto numbers the chapter from its H1 and reads the label there: @sec-model is 'Chapter 7'."
    fm = _front_matter(_cells(proc/nb.name))
    assert fm['title'] is None and fm['skip_showdoc'] is True
    h1 = [bl.src(c).split('\n')[0] for c in _cells(proc/nb.name)
          if c['cell_type'] == 'markdown' and bl.src(c).startswith('# ')]
    assert len(h1) == 1 and h1[0].endswith('{#' + bl.chapter_id(bl._module(nb)) + '}')
