/**
 * The notebooks' sources are TypeScript files in the percent format (`notebooks/src/*.ts`, the
 * layout jupytext and VS Code read): `// %% [markdown]` starts a markdown cell whose lines are
 * comments, `// %%` a code cell. `npm run notebooks:build` writes the .ipynb files from them
 * (no outputs); after editing a notebook in Jupyter, `npm run notebooks:import` writes its cells
 * back into the source. A test keeps both sides in sync.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Cell {
  kind: 'markdown' | 'code';
  source: string;
}

const MARKDOWN = '// %% [markdown]';
const CODE = '// %%';

export function parsePercent(text: string): Cell[] {
  const cells: Cell[] = [];
  let current: { kind: Cell['kind']; lines: string[] } | undefined;
  const close = () => {
    if (!current) return;
    const lines = [...current.lines];
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    const source = current.kind === 'markdown' ? lines.map((l) => (l === '//' ? '' : l.replace(/^\/\/ /, ''))).join('\n') : lines.join('\n');
    cells.push({ kind: current.kind, source });
  };
  for (const line of text.split('\n')) {
    if (line === MARKDOWN || line === CODE) {
      close();
      current = { kind: line === MARKDOWN ? 'markdown' : 'code', lines: [] };
    } else if (current) {
      current.lines.push(line);
    } else if (line.trim() !== '') {
      throw new Error(`text before the first cell marker: '${line}'`);
    }
  }
  close();
  return cells;
}

export function formatPercent(cells: Cell[]): string {
  return cells
    .map((cell) => {
      const body = cell.kind === 'markdown' ? cell.source.split('\n').map((l) => (l === '' ? '//' : `// ${l}`)).join('\n') : cell.source;
      return `${cell.kind === 'markdown' ? MARKDOWN : CODE}\n${body}\n`;
    })
    .join('\n');
}

/** The .ipynb text of a notebook: the tslab kernel, no outputs, stable cell ids. */
export function toIpynb(name: string, cells: Cell[]): string {
  const doc = {
    cells: cells.map((cell, i) => {
      const lines = cell.source.split('\n').map((line, j, all) => (j < all.length - 1 ? `${line}\n` : line));
      const base: Record<string, unknown> = { cell_type: cell.kind, id: `${name.slice(0, 2)}-${String(i).padStart(2, '0')}`, metadata: {}, source: cell.source === '' ? [] : lines };
      return cell.kind === 'code' ? { ...base, execution_count: null, outputs: [] } : base;
    }),
    metadata: { kernelspec: { display_name: 'TypeScript', language: 'typescript', name: 'tslab' }, language_info: { name: 'typescript' } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  return `${JSON.stringify(doc, null, 1)}\n`;
}

export function fromIpynb(text: string): Cell[] {
  const doc = JSON.parse(text) as { cells: Array<{ cell_type: string; source: string | string[] }> };
  return doc.cells
    .filter((c) => c.cell_type === 'markdown' || c.cell_type === 'code')
    .map((c) => ({ kind: c.cell_type as Cell['kind'], source: (Array.isArray(c.source) ? c.source.join('') : c.source).replace(/\n+$/, '') }));
}

function main(): void {
  const root = path.resolve(__dirname, '..', '..');
  const notebooks = path.join(root, 'notebooks');
  const sources = path.join(notebooks, 'src');
  const command = process.argv[2];
  if (command === 'build') {
    for (const file of fs.readdirSync(sources).filter((f) => f.endsWith('.ts')).sort()) {
      const name = file.slice(0, -3);
      fs.writeFileSync(path.join(notebooks, `${name}.ipynb`), toIpynb(name, parsePercent(fs.readFileSync(path.join(sources, file), 'utf8'))));
      console.log(`notebooks/${name}.ipynb <- notebooks/src/${file}`);
    }
  } else if (command === 'import') {
    fs.mkdirSync(sources, { recursive: true });
    for (const file of fs.readdirSync(notebooks).filter((f) => f.endsWith('.ipynb')).sort()) {
      const name = file.slice(0, -6);
      fs.writeFileSync(path.join(sources, `${name}.ts`), formatPercent(fromIpynb(fs.readFileSync(path.join(notebooks, file), 'utf8'))));
      console.log(`notebooks/src/${name}.ts <- notebooks/${file} (outputs dropped)`);
    }
  } else {
    console.error('usage: node dist/scripts/notebooks.js build | import');
    process.exitCode = 1;
  }
}

if (require.main === module) main();
