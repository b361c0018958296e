/**
 * Keeps docs/configuration.md in step with the code: every environment variable that
 * src/config/env.ts reads and every field of the tenants-file schema must be documented,
 * the docs must not name variables that do not exist, and the YAML in the docs must parse.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Kind, type TSchema } from '@sinclair/typebox';
import * as schema from '../../src/config/schema.js';
import { AwsSettings } from '../../src/config/providers/aws.js';
import { AzureSettings } from '../../src/config/providers/azure.js';
import { GcpSettings } from '../../src/config/providers/gcp.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const docs = read('docs/configuration.md');
const envSource = read('src/config/env.ts');

/** Mentioned as inline code, the way the docs' tables name things. */
const documented = (name: string): boolean => docs.includes(`\`${name}\``);

function envVarsRead(): string[] {
  return [...new Set([...envSource.matchAll(/'(KEYWARD_[A-Z0-9_]+)'/g)].map((m) => m[1]!))].sort();
}

function isSchema(value: unknown): value is TSchema {
  return typeof value === 'object' && value !== null && Kind in value;
}

/** Cloud provider blocks are documented on their own pages, docs/kms/<provider>.md. */
const PROVIDER_PAGES = { aws: AwsSettings, azure: AzureSettings, gcp: GcpSettings } as const;

/**
 * Every property name, and every string literal value, anywhere in the given schemas
 * (by default the tenants-file schemas, without descending into the cloud provider blocks).
 */
function schemaVocabulary(roots: readonly unknown[] = Object.values(schema), skip: ReadonlySet<string> = new Set(Object.keys(PROVIDER_PAGES))): { properties: Set<string>; literals: Set<string> } {
  const properties = new Set<string>();
  const literals = new Set<string>();
  const seen = new Set<object>();
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return;
    seen.add(node);
    const s = node as Record<string, unknown>;
    if (typeof s.const === 'string') literals.add(s.const);
    if (typeof s.properties === 'object' && s.properties !== null) {
      for (const [name, child] of Object.entries(s.properties)) {
        properties.add(name);
        if (!skip.has(name)) visit(child);
      }
    }
    for (const key of ['anyOf', 'allOf', 'oneOf'] as const) {
      if (Array.isArray(s[key])) for (const child of s[key] as unknown[]) visit(child);
    }
    visit(s.items);
    if (typeof s.patternProperties === 'object' && s.patternProperties !== null) {
      for (const child of Object.values(s.patternProperties)) visit(child);
    }
    if (typeof s.additionalProperties === 'object') visit(s.additionalProperties);
  };
  for (const value of roots) if (isSchema(value) && (skip.size === 0 || !Object.values(PROVIDER_PAGES).includes(value as never))) visit(value);
  return { properties, literals };
}

/** Fenced ```yaml blocks of the docs. */
function yamlBlocks(): string[] {
  return [...docs.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

describe('docs/configuration.md', () => {
  it('documents every environment variable that src/config/env.ts reads', () => {
    const names = envVarsRead();
    assert.ok(names.length >= 13, `found the variables in env.ts (${names.join(', ')})`);
    for (const expected of ['KEYWARD_CONFIG', 'KEYWARD_API_KEY', 'KEYWARD_API_KEY_2', 'KEYWARD_KMS_TIMEOUT']) {
      assert.ok(names.includes(expected), `the scan finds ${expected}`);
    }
    const missing = names.filter((name) => !documented(name));
    assert.deepEqual(missing, [], `undocumented environment variables: ${missing.join(', ')}`);
  });

  it('names no environment variable that Keyward does not read', () => {
    const known = new Set(envVarsRead());
    const mentioned = new Set([...docs.matchAll(/KEYWARD_[A-Z0-9_]*[A-Z0-9]/g)].map((m) => m[0]));
    const invented = [...mentioned].filter((name) => !known.has(name));
    assert.deepEqual(invented, [], `documented but not read by env.ts: ${invented.join(', ')}`);
  });

  it('documents every field of the tenants-file schema', () => {
    const { properties } = schemaVocabulary();
    for (const expected of ['version', 'tenants', 'kmsConfigs', 'id', 'status', 'keyFile', 'pin', 'sessions', 'env', 'file']) {
      assert.ok(properties.has(expected), `the schema walk finds ${expected}`);
    }
    const missing = [...properties].filter((name) => !documented(name));
    assert.deepEqual(missing, [], `undocumented tenants-file fields: ${missing.join(', ')}`);
  });

  it('documents every allowed value of the schema enumerations', () => {
    const { literals } = schemaVocabulary();
    for (const expected of ['primary', 'active', 'disabled', 'local', 'pkcs11', 'aes-gcm', 'aes-key-wrap-pad']) {
      assert.ok(literals.has(expected), `the schema walk finds ${expected}`);
    }
    const missing = [...literals].filter((value) => !documented(value));
    assert.deepEqual(missing, [], `undocumented values: ${missing.join(', ')}`);
  });

  it('shows tenants files that are valid, with a local and a pkcs11 configuration', () => {
    const files = yamlBlocks().filter((block) => /^(#.*\n)*version: /.test(block));
    assert.ok(files.length >= 2, 'the complete example and the dev config');
    const providers = new Set<string>();
    for (const text of files) {
      const directory = parseTenantsFile(text, { baseDir: '/etc/keyward', defaultKmsTimeoutMs: 5_000 });
      for (const config of directory.configs()) providers.add(config.provider);
    }
    assert.deepEqual([...providers].sort(), ['local', 'pkcs11']);
  });

  it('shows the built-in dev config as it is', () => {
    const strip = (text: string): string =>
      text
        .split('\n')
        .filter((line) => !/^\s*#/.test(line) && line.trim() !== '')
        .join('\n');
    const devFile = strip(read('config/dev.yaml'));
    assert.ok(
      yamlBlocks().some((block) => strip(block) === devFile),
      'docs/configuration.md has a yaml block equal to config/dev.yaml (comments aside)',
    );
  });
});

describe('docs/kms/<provider>.md', () => {
  for (const [provider, settings] of Object.entries(PROVIDER_PAGES)) {
    it(`${provider}: documents every field and allowed value of the ${provider} block`, () => {
      const page = read(`docs/kms/${provider}.md`);
      const { properties, literals } = schemaVocabulary([settings], new Set());
      const missing = [...properties, ...literals].filter((name) => !page.includes(`\`${name}\``));
      assert.ok(properties.size > 2, 'the schema walk finds the fields');
      assert.deepEqual(missing, [], `undocumented in docs/kms/${provider}.md: ${missing.join(', ')}`);
    });
  }
});
