import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Errors } from '../src/errors.js';

/** docs/errors.md and src/errors.ts must list exactly the same entries. */
describe('error catalogue', () => {
  const entries = Object.values(Errors);

  it('has unique names, and shares a code only within the request-shape family (102) and for the SDK forms of API_KEY_TENANT_FORBIDDEN (101) and AUDIT_UNAVAILABLE (301)', () => {
    assert.equal(new Set(entries.map((e) => e.name)).size, entries.length);
    const shared = [...new Set(entries.map((e) => e.code))].filter((code) => entries.filter((e) => e.code === code).length > 1);
    assert.deepEqual(shared.sort(), [101, 102, 301]);
    assert.deepEqual(entries.filter((e) => e.code === 101).map((e) => [e.name, e.status]), [['UNAUTHORIZED_REQUEST', 401], ['API_KEY_TENANT_FORBIDDEN_SDK', 403]]);
    assert.deepEqual(entries.filter((e) => e.code === 301).map((e) => [e.name, e.status]), [['SECURITY_EVENT_REJECTED', 400], ['AUDIT_UNAVAILABLE_SDK', 503]]);
    for (const [key, spec] of Object.entries(Errors)) assert.equal(spec.name, key);
  });

  it('uses 4xx for caller faults and 5xx for server and KMS faults', () => {
    for (const e of entries) {
      assert.ok(e.status >= 400 && e.status < 600, e.name);
      if (e.code >= 204 && e.code <= 210 && e.code !== 206) assert.ok(e.status >= 500, `${e.name} is a KMS fault`);
      if (e.code >= 101 && e.code <= 103) assert.ok(e.status < 500, `${e.name} is a caller fault`);
    }
    assert.equal(Errors.UNAUTHORIZED_REQUEST.status, 401, 'the Java client hard-codes 401 → 101');
  });

  it('is documented row for row in docs/errors.md', async () => {
    const text = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const section = text.slice(text.indexOf('## Catalogue'), text.indexOf('## How KMS failures'));
    const rows = section
      .split('\n')
      .filter((line) => /^\| \d{3} \|/.test(line))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    const documented = rows.map(([, code, name, status, retry]) => ({ code: Number(code), name, status: Number(status), retry }));
    assert.deepEqual(
      documented.map((d) => `${d.code} ${d.name} ${d.status}`).sort(),
      entries.map((e) => `${e.code} ${e.name} ${e.status}`).sort(),
    );
    for (const d of documented) {
      const spec = entries.find((e) => e.name === d.name)!;
      if (spec.retryAfterSeconds === undefined) assert.equal(d.retry, '', `${d.name} documents no Retry-After`);
      else assert.match(d.retry!, new RegExp(String(spec.retryAfterSeconds)), `${d.name} documents its Retry-After`);
    }
  });
});
