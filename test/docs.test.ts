import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './helpers';

const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

test('the README stays a five-minute read', () => {
  assert.ok(Buffer.byteLength(readme) <= 10_240, `README.md is ${Buffer.byteLength(readme)} bytes; move detail to docs/`);
});

test('every file, link and function the README and docs name exists', () => {
  const pages = ['README.md', ...fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  for (const page of pages) {
    const text = fs.readFileSync(path.join(REPO_ROOT, page), 'utf8');
    const base = path.dirname(path.join(REPO_ROOT, page));
    for (const [, target] of text.matchAll(/\]\(([^)#:\s]+)\)/g)) {
      assert.ok(fs.existsSync(path.resolve(base, target)), `${page} links to ${target}, which does not exist`);
    }
    for (const [, file] of text.matchAll(/`((?:lib|test|bench|scripts)\/[\w./-]+\.(?:ts|sh|py))`/g)) {
      assert.ok(fs.existsSync(path.join(REPO_ROOT, file)), `${page} names ${file}, which does not exist`);
    }
  }
  // "`name` in `lib/...`": the function is defined in that file.
  for (const [, name, file] of readme.matchAll(/`(\w+)` in `(lib\/[\w./-]+\.ts)`/g)) {
    assert.match(fs.readFileSync(path.join(REPO_ROOT, file), 'utf8'), new RegExp(`function ${name}\\b`), `README: ${name} is not defined in ${file}`);
  }
});
