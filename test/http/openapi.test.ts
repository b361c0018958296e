import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Validator } from '@seriousme/openapi-schema-validator';
import { parse } from 'yaml';
import { plainSchema } from '../../src/http/openapi.js';
import { renderOpenApi } from '../../scripts/gen-openapi.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

type Doc = { paths: Record<string, Record<string, { requestBody?: { content: { 'application/json': { schema: unknown } } } }>> };

describe('openapi.yaml', () => {
  let app: TestApp;
  let text: string;
  let doc: Doc;
  before(async () => {
    app = await startTestApp();
    text = await readFile(new URL('../../openapi.yaml', import.meta.url), 'utf8');
    doc = parse(text) as Doc;
  });
  after(() => app.close());

  it('is what `npm run openapi` generates from the route table (regenerate it if this fails)', () => {
    assert.equal(text, renderOpenApi());
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(doc);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    assert.equal(validator.version, '3.1');
  });

  it('documents every registered route, and registers every documented path', () => {
    const registered = new Set(app.routes.map((r) => `${r.method} ${r.url}`));
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`)));
    assert.deepEqual([...registered].filter((r) => !documented.has(r)), [], 'routes missing from openapi.yaml');
    assert.deepEqual([...documented].filter((d) => !registered.has(d)), [], 'paths in openapi.yaml with no route');
    assert.ok(registered.size >= 10);
  });

  it('documents the request schema each route validates with', () => {
    for (const route of app.routes) {
      if (route.bodySchema === undefined) continue;
      const documented = doc.paths[route.url]?.[route.method.toLowerCase()]?.requestBody?.content['application/json'].schema;
      assert.deepEqual(documented, plainSchema(route.bodySchema), `${route.method} ${route.url}`);
    }
  });
});
