"""The book lint (tests/booklint.py) on the real book, and on broken copies to show it bites."""
import json, shutil
from pathlib import Path
import pytest, yaml
import booklint as bl

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('check', bl.ALL_CHECKS, ids=lambda f: f.__name__)
def test_book(check):
    assert check(ROOT) == []


def test_quarto_is_a_book_with_html_and_pdf():
    q = yaml.safe_load((ROOT/'_quarto.yml').read_text())
    assert q['project']['type'] == 'book'
    assert q['project']['output-dir'] == '_docs'          # where nbdev_docs moves it from
    assert {'html', 'pdf'} <= set(q['format'])
    assert 'pdf' in q['book']['downloads']
    assert 'breaklines' in q['format']['pdf']['include-in-header']['text']
    assert q['execute']['enabled'] is False               # outputs come from real runs
    assert quarto_parts(q) == [p for p in PARTS if p in quarto_parts(q)]


PARTS = ['Preprocessing', 'Architecture', 'Pretraining', 'Scaling', 'Fine-tuning']


def quarto_parts(q):
    return [e['part'] for e in q['book']['chapters'] if isinstance(e, dict)]


def test_nbdev_reads_the_top_level_quarto_yml():
    link = ROOT/'nbs'/'_quarto.yml'
    assert link.is_symlink() and link.resolve() == (ROOT/'_quarto.yml').resolve()


def test_index_and_appendix_order():
    files = bl.quarto_files(ROOT)
    assert files[0] == 'index.ipynb'
    assert files[-2:] == ['D_cli.ipynb', 'E_repro.ipynb']


@pytest.fixture
def book(tmp_path):
    "A scratch copy of the book to break."
    for d in ('nbs', 'llmbook'): shutil.copytree(ROOT/d, tmp_path/d, symlinks=True)
    shutil.copy(ROOT/'_quarto.yml', tmp_path/'_quarto.yml')
    return tmp_path


def _add_cell(nb_path, source, cell_type='markdown', outputs=None):
    nb = json.loads(nb_path.read_text())
    c = {'cell_type': cell_type, 'metadata': {}, 'source': source}
    if cell_type == 'code': c |= {'execution_count': None, 'outputs': outputs or []}
    nb['cells'].append(c)
    nb_path.write_text(json.dumps(nb))


def test_lint_catches_unlisted_notebook(book):
    shutil.copy(book/'nbs'/'01_core.ipynb', book/'nbs'/'50_extra.ipynb')
    assert any('50_extra.ipynb is not listed' in p for p in bl.check_listed(book))


def test_lint_catches_missing_chapter(book):
    (book/'nbs'/'01_core.ipynb').unlink()
    assert any('lists 01_core.ipynb, which does not exist' in p for p in bl.check_listed(book))


def test_lint_catches_broken_reference(book):
    _add_cell(book/'nbs'/'01_core.ipynb', 'As @sec-no-such-section shows, and @fig-nope.')
    probs = bl.check_refs(book)
    assert any('@sec-no-such-section' in p for p in probs)
    assert any('@fig-nope' in p for p in probs)


def test_lint_accepts_a_good_reference(book):
    _add_cell(book/'nbs'/'01_core.ipynb', '## New {#sec-new-one}\n\nSee @sec-new-one.')
    assert bl.check_refs(book) == []


def test_lint_catches_long_line_and_churning_outputs(book):
    out = [{'output_type': 'stream', 'name': 'stdout',
            'text': ['saved to /root/.cache/x\n', '<Foo object at 0x7f3a2b1c9d80>\n']}]
    _add_cell(book/'nbs'/'01_core.ipynb', 'x = 1  # ' + 'y' * 80, 'code', out)
    assert len(bl.check_code_width(book)) == 1
    probs = bl.check_outputs(book)
    assert any('absolute path' in p for p in probs) and any('memory address' in p for p in probs)


def test_lint_catches_module_without_notebook(book):
    (book/'llmbook'/'stray.py').write_text('# hand written\n')
    assert any('stray.py does not come from any notebook' in p for p in bl.check_modules(book))


def test_lint_catches_an_h1_without_its_chapter_label(book):
    _add_cell(book/'nbs'/'01_core.ipynb', '# Title {#sec-title}')
    _add_cell(book/'nbs'/'03_data.ipynb', '# Another title')
    _add_cell(book/'nbs'/'03_data.ipynb', '```bash\n# a shell comment\n```')
    probs = bl.check_h1(book)
    assert len(probs) == 2 and '{#sec-core}' in probs[0] and '{#sec-data}' in probs[1]


def test_preface_chapter_map_names_every_module():
    "The chapter map in the preface lists every exported module, in book order."
    import re
    md = ''.join(''.join(c['source']) for c in bl.cells(ROOT/'nbs'/'index.ipynb') if c['cell_type'] == 'markdown')
    mapped = re.findall(r'\| `(llmbook\.\w+)` \|', md)
    exported = []
    for f in bl.quarto_files(ROOT):
        for c in bl.cells(ROOT/'nbs'/f):
            if m := re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M):
                exported.append('llmbook.' + m.group(1))
    assert mapped == exported


# ---- the checks added for the rendered book (issue #13), each shown to bite ----

def _title(nb_path, new_source):
    nb = json.loads(nb_path.read_text())
    i = bl._title_cell(nb_path)
    nb['cells'][i]['source'] = new_source
    nb_path.write_text(json.dumps(nb))


def test_lint_catches_prose_in_the_title_cell(book):
    _title(book/'nbs'/'05_dataset.ipynb',
           '# Token datasets {#sec-dataset}\n\n> One line.\n\nProse beside the title.')
    assert any('more than its H1 and summary' in p for p in bl.check_title_cells(book))


def test_lint_catches_a_two_line_summary_and_a_missing_front_matter(book):
    _title(book/'nbs'/'05_dataset.ipynb', '# Token datasets {#sec-dataset}\n\n> One line,\n> and another.')
    nb = json.loads((book/'nbs'/'05_dataset.ipynb').read_text())
    nb['cells'] = [c for c in nb['cells'] if c['cell_type'] != 'raw']   # nbdev would eat the H1
    (book/'nbs'/'05_dataset.ipynb').write_text(json.dumps(nb))
    probs = bl.check_title_cells(book)
    assert any('exactly one `>`' in p for p in probs)
    assert any('raw front matter' in p for p in probs)


def test_lint_catches_a_numbered_preface(book):
    nb = json.loads((book/'nbs'/'index.ipynb').read_text())
    i = bl._title_cell(book/'nbs'/'index.ipynb')
    nb['cells'][i]['source'] = '# Preface\n\nText.'
    (book/'nbs'/'index.ipynb').write_text(json.dumps(nb))
    assert any("'# Preface {.unnumbered}'" in p for p in bl.check_title_cells(book))


def test_lint_catches_imports_mixed_with_code(book):
    _add_cell(book/'nbs'/'01_core.ipynb', 'import os\nx = os.sep', 'code')
    assert any('mixes imports' in p for p in bl.check_imports(book))
    _add_cell(book/'nbs'/'03_data.ipynb', '#| exports\nimport os\nSEP = os.sep', 'code')
    assert len(bl.check_imports(book)) == 1   # exported cells run at docs time anyway


def test_lint_catches_wide_output_but_not_hidden_or_asis(book):
    out = lambda n: [{'output_type': 'stream', 'name': 'stdout', 'text': ['z' * n + '\n']}]
    before = bl.check_output_width(book)
    _add_cell(book/'nbs'/'01_core.ipynb', 'print(1)', 'code', out(89))
    _add_cell(book/'nbs'/'01_core.ipynb', '#| hide\nprint(1)', 'code', out(200))
    _add_cell(book/'nbs'/'01_core.ipynb', '#| output: asis\nprint(1)', 'code', out(200))
    _add_cell(book/'nbs'/'01_core.ipynb', 'print(1)', 'code', out(88))
    assert len(bl.check_output_width(book)) == len(before) + 1


def _html(h): return [{'output_type': 'execute_result', 'execution_count': None, 'metadata': {},
                       'data': {'text/html': h, 'text/plain': 'df'}}]


def test_lint_catches_wide_and_multirow_tables(book):
    wide = '<table><tr>' + ''.join(f'<th>column_{i:02d}</th>' for i in range(9)) + '</tr></table>'
    span = '<table><tr><th rowspan="2">a</th><td>1</td></tr><tr><td>2</td></tr></table>'
    ok = '<table><tr><th>a</th><td>1</td></tr></table>'
    before = set(bl.check_tables(book))
    for h in (wide, span, ok): _add_cell(book/'nbs'/'01_core.ipynb', 'df', 'code', _html(h))
    probs = set(bl.check_tables(book)) - before
    assert len(probs) == 2
    assert any('wide' in p for p in probs) and any('spanning' in p for p in probs)
    test_w, spans = bl.table_width(wide)
    assert test_w == 9 * len('column_00') + 2 * 9 and not spans


def test_lint_catches_glyphs_the_fonts_lack(book):
    _add_cell(book/'nbs'/'01_core.ipynb', 'Hugging Face `\U0001F917` and text \u2264 1.')
    out = [{'output_type': 'stream', 'name': 'stdout', 'text': ['\u65e5\u672c\ufffd\n']}]
    _add_cell(book/'nbs'/'01_core.ipynb', "s = '\\u65e5'", 'code', out)
    probs = [p for p in bl.check_glyphs(book) if p.startswith('01_core')]
    assert any('U+1F917' in p for p in probs)          # emoji in a code span
    assert any('U+65E5' in p and '(output)' in p for p in probs)
    assert not any('U+2264' in p or 'U+FFFD' in p for p in probs)   # DejaVu has these


def test_lint_catches_stored_warnings(book):
    err = [{'output_type': 'stream', 'name': 'stderr', 'text': ['careful\n']}]
    warn = [{'output_type': 'stream', 'name': 'stdout', 'text': ['x.py:4: FutureWarning: y\n']}]
    before = len(bl.check_no_stderr(book))
    _add_cell(book/'nbs'/'01_core.ipynb', 'f()', 'code', err)
    _add_cell(book/'nbs'/'01_core.ipynb', 'g()', 'code', warn)
    assert len(bl.check_no_stderr(book)) == before + 2


# ---- figures (issue #16) ----

def test_figure_counts():
    "At least 4 figures in every chapter of parts I-V, 2 in the set-up chapters and appendices."
    assert bl.check_figure_counts(ROOT) == []


def test_lint_catches_unreferenced_figure_and_counts_diagrams(book):
    fig = '#| label: fig-core-demo\n#| fig-cap: "A demo."\nfig, ax = diagram(1, 1)'
    n0, d0, _ = bl.figure_counts(book)['01_core.ipynb']
    _add_cell(book/'nbs'/'01_core.ipynb', fig, 'code')
    assert any('fig-core-demo is never referred to' in p for p in bl.check_figure_refs(book))
    _add_cell(book/'nbs'/'01_core.ipynb', 'As @fig-core-demo shows.')
    assert not any('fig-core-demo' in p for p in bl.check_figure_refs(book))
    helper = 'def draw_mask(ax, m):\n    "Draw m."\n    return grid(ax, m)'
    plot = '#| label: fig-core-plot\n#| fig-cap: "A plot."\nplt.plot([1, 2])'
    via = '#| label: fig-core-via\n#| fig-cap: "Drawn by a chapter helper."\ndraw_mask(ax, m)'
    for s in (helper, plot, via): _add_cell(book/'nbs'/'01_core.ipynb', s, 'code')
    figs = dict(bl.figures(book/'nbs'/'01_core.ipynb'))
    assert {k: figs[k] for k in figs if k.startswith('fig-core-') and k[9:] in ('demo', 'plot', 'via')} == \
        {'fig-core-demo': True, 'fig-core-plot': False, 'fig-core-via': True}
    counts = bl.figure_counts(book)
    assert counts['01_core.ipynb'][:2] == (n0 + 3, d0 + 2) and counts['D_cli.ipynb'][2] == 0


def test_lint_catches_an_upward_import_and_a_long_module(book):
    p = book/'llmbook'/'optim.py'
    p.write_text(p.read_text() + '\nfrom llmbook.train import Trainer\n' + '\n' * 700)
    probs = bl.check_module_order(book)
    assert any('llmbook.optim imports llmbook.train' in x for x in probs)
    assert any('optim.py has' in x for x in probs)


def test_lint_catches_a_relative_upward_import(book):
    p = book/'llmbook'/'optim.py'
    p.write_text(p.read_text() + '\nfrom .checkpoint import TrainConfig\n')
    assert any('llmbook.optim imports llmbook.checkpoint' in x for x in bl.check_module_order(book))


def test_lint_catches_a_name_imported_through_another_module(book):
    assert bl.check_import_sources(book) == []
    p = book/'llmbook'/'classify.py'
    p.write_text(p.read_text() + '\nfrom .train import TrainConfig\n')
    probs = bl.check_import_sources(book)
    assert len(probs) == 1 and 'TrainConfig through llmbook.train' in probs[0], probs


# ---- what our own render showed (issue #22), each check shown to bite ----

def _png_output(width_px):
    import base64, struct, zlib
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width_px * 2, 10, 8, 2, 0, 0, 0))
           + chunk(b'IEND', b''))
    return [{'output_type': 'display_data', 'metadata': {'image/png': {'width': width_px, 'height': 5}},
             'data': {'image/png': base64.b64encode(png).decode(), 'text/plain': '<Figure>'}}]


def test_lint_catches_a_figure_wider_than_the_text_block(book):
    before = set(bl.check_figure_width(book))
    _add_cell(book/'nbs'/'01_core.ipynb', 'fig', 'code', _png_output(558))   # 5.81 in is 557.8 px
    _add_cell(book/'nbs'/'01_core.ipynb', 'fig', 'code', _png_output(557))
    probs = set(bl.check_figure_width(book)) - before
    assert len(probs) == 1 and '558 px' in probs.pop()


def test_lint_catches_small_fonts_and_wide_figsizes(book):
    _add_cell(book/'nbs'/'01_core.ipynb', "ax.text(0, 0, 'x', fontsize=6.5)\nplt.subplots(figsize=(6.3, 2))\n"
              "ax.text(0, 0, 'y', fontsize=7)\nplt.subplots(figsize=(WIDTH, 2))", 'code')
    probs = bl.check_figure_fonts(book)
    assert len(probs) == 2 and 'fontsize=6.5' in probs[0] and 'figsize=(6.3,' in probs[1]


def test_lint_catches_bare_chapter_numbers(book):
    _add_cell(book/'nbs'/'01_core.ipynb', 'As chapter 5 showed, and `chapter 6` in code is fine.')
    _add_cell(book/'nbs'/'01_core.ipynb', "x = 'Chapter 1'  # see chapter 7e", 'code')
    probs = bl.check_chapter_numbers(book)
    assert len(probs) == 2 and "'chapter 5'" in probs[0] and "'chapter 7e'" in probs[1]


def test_lint_catches_pandoc_traps(book):
    _add_cell(book/'nbs'/'01_core.ipynb', '- an item that wraps onto a line that\n  @sec-core-data. starts with a reference')
    _add_cell(book/'nbs'/'01_core.ipynb', '(@sec-core-data) opens a paragraph.')
    _add_cell(book/'nbs'/'01_core.ipynb', 'A paragraph whose second line\n@sec-core-data starts with one is fine.')
    _add_cell(book/'nbs'/'01_core.ipynb', 'Run it with --out here, but `--out` is fine.')
    _add_cell(book/'nbs'/'01_core.ipynb', '#| fig-cap: "With --nproc 2."\nfig', 'code')
    out = [{'output_type': 'display_data', 'metadata': {}, 'data': {'text/markdown': '- `--x`: after --y'}}]
    _add_cell(book/'nbs'/'01_core.ipynb', 'md', 'code', out)
    fence = [{'output_type': 'stream', 'name': 'stdout', 'text': ['```js\nf()}```\n']}]
    _add_cell(book/'nbs'/'01_core.ipynb', '#| output: asis\nprint(src)', 'code', fence)
    probs = [p for p in bl.check_pandoc_traps(book) if p.startswith('01_core')]
    assert sum('example list' in p for p in probs) == 2
    assert sum("'--'" in p for p in probs) == 3
    assert sum('never closed' in p for p in probs) == 1


def test_lint_catches_raw_notation_in_captions(book):
    _add_cell(book/'nbs'/'01_core.ipynb', '#| fig-cap: "x_(r+4) and m·θ, but $x_{r+4}$ is math."\nfig', 'code')
    probs = bl.check_captions(book)
    assert len(probs) == 1 and 'x_(' in probs[0]


def test_lint_catches_missing_typography_settings(book):
    q = yaml.safe_load((book/'_quarto.yml').read_text())
    del q['format']['pdf']['latex-min-runs']
    q['format']['pdf']['classoption'] = ['oneside']
    (book/'_quarto.yml').write_text(yaml.safe_dump(q))
    shutil.copy(ROOT/'settings.ini', book/'settings.ini')
    probs = bl.check_typography(book)
    assert any('latex-min-runs' in p for p in probs) and any('noenddot' in p for p in probs)
    assert not any('add_links' in p for p in probs)


def test_lint_catches_a_pasted_cell(book):
    cell = '#| exports\ndef f(x):\n    "Twice."\n    return x'
    for _ in range(2): _add_cell(book/'nbs'/'01_core.ipynb', cell, 'code')
    probs = bl.check_duplicate_cells(book)
    assert len(probs) == 1 and probs[0].startswith('01_core.ipynb')
