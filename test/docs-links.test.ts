import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function markdownFiles(): string[] {
  const docs = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? docs(join(dir, e.name)) : e.name.endsWith('.md') ? [join(dir, e.name)] : []));
  return [join(ROOT, 'README.md'), join(ROOT, 'DEVELOPERS.md'), ...docs(join(ROOT, 'docs'))];
}

describe('documentation links', () => {
  it('every relative link in README, DEVELOPERS and docs/ points at a file that exists', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of markdownFiles()) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = match[1]!.split('#')[0]!;
        if (target === '' || /^[a-z]+:/i.test(target)) continue;
        checked++;
        if (!existsSync(join(dirname(file), target))) broken.push(`${relative(ROOT, file)} → ${match[1]}`);
      }
    }
    assert.ok(checked > 10, `found links to check (${checked})`);
    assert.deepEqual(broken, []);
  });
});
