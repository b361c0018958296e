/**
 * The `audit` block of the tenants file: sinks, routes and policies, validated with every
 * problem reported at once, like the rest of the file.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';

const TENANT = `
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: k.key } }`;

function parse(audit: string, tenantAudit = ''): ReturnType<typeof parseTenantsFile> {
  return parseTenantsFile(`version: 1\n${audit}\ntenants:${TENANT}\n${tenantAudit}`, { baseDir: '/etc/keyward', defaultKmsTimeoutMs: 1000 });
}

function problems(audit: string, tenantAudit = ''): readonly string[] {
  try {
    parse(audit, tenantAudit);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected the file to be refused');
}

describe('tenants file: audit', () => {
  it('without an audit block: the built-in stdout sink, best effort, for everyone', () => {
    const directory = parse('');
    assert.deepEqual([...directory.audit.sinks.keys()], ['stdout']);
    assert.deepEqual(directory.auditRoute('acme'), { sinks: ['stdout'], policy: 'bestEffort' });
    assert.deepEqual(directory.auditRoute('unknown-tenant'), { sinks: ['stdout'], policy: 'bestEffort' });
  });

  it('sinks with defaults resolved, relative paths against the file, a default route and per-tenant routes', () => {
    const directory = parse(
      `audit:
  sinks:
    siem:
      type: http
      http: { url: 'https://siem.example/services/collector/event', format: splunk-hec, token: { file: secrets/hec }, caFile: ca.pem }
    soc:
      type: syslog
      syslog: { host: soc.example, port: 6514, tls: { caFile: /etc/ssl/soc.pem } }
      queue: { size: 500, batchSize: 50, linger: 100ms, minBackoff: 1s, maxBackoff: 1m }
  default: { sinks: [stdout, soc] }`,
      `    audit: { sinks: [siem], policy: required }`,
    );
    const siem = directory.audit.sinks.get('siem');
    assert.equal(siem?.type, 'http');
    assert.deepEqual(siem?.type === 'http' && siem.http, {
      url: 'https://siem.example/services/collector/event',
      format: 'splunk-hec',
      timeoutMs: 5000,
      token: { file: '/etc/keyward/secrets/hec' },
      caFile: '/etc/keyward/ca.pem',
    });
    assert.deepEqual(siem?.queue, { size: 10_000, batchSize: 100, lingerMs: 0, minBackoffMs: 250, maxBackoffMs: 30_000 });
    const soc = directory.audit.sinks.get('soc');
    assert.deepEqual(soc?.type === 'syslog' && soc.syslog, { host: 'soc.example', port: 6514, facility: 'authpriv', appName: 'keyward', timeoutMs: 5000, tls: { caFile: '/etc/ssl/soc.pem' } });
    assert.deepEqual(soc?.queue, { size: 500, batchSize: 50, lingerMs: 100, minBackoffMs: 1000, maxBackoffMs: 60_000 });
    assert.deepEqual(directory.auditRoute('acme'), { sinks: ['siem'], policy: 'required' });
    assert.deepEqual(directory.auditRoute('someone-else'), { sinks: ['stdout', 'soc'], policy: 'bestEffort' });
  });

  it('a sink fingerprint changes with any setting, and only then', () => {
    const sink = (size: number) => parse(`audit:\n  sinks:\n    soc: { type: syslog, syslog: { host: a, port: 514 }, queue: { size: ${size} } }`).audit.sinks.get('soc')?.fingerprint;
    assert.equal(sink(5), sink(5));
    assert.notEqual(sink(5), sink(6));
  });

  it('reports every problem at once, without echoing secrets', () => {
    const found = problems(
      `audit:
  sinks:
    Bad_Name: { type: stdout }
    stdout: { type: http, http: { url: 'https://x.example' } }
    mixed: { type: http, syslog: { host: a, port: 1 } }
    leaky: { type: http, http: { url: 'http://siem.example/events', token: { env: SIEM_TOKEN } } }
    creds: { type: http, http: { url: 'https://user:hunter2@siem.example/events' } }
    slow: { type: syslog, syslog: { host: a, port: 514 }, queue: { minBackoff: 2m, maxBackoff: 1s } }
  default: { sinks: [nowhere] }`,
      `    audit: { sinks: [missing] }`,
    );
    const expect = [
      /audit\.sinks\.Bad_Name: sink names are/,
      /audit\.sinks\.stdout\.type: the name stdout is reserved/,
      /audit\.sinks\.mixed\.syslog: type is http, so a syslog block does not belong here/,
      /audit\.sinks\.mixed\.http: required when type is http/,
      /audit\.sinks\.leaky\.http\.url: a token is only sent over https/,
      /audit\.sinks\.creds\.http\.url: must not carry credentials/,
      /audit\.sinks\.slow\.queue: minBackoff must not be longer than maxBackoff/,
      /audit\.default\.sinks: "nowhere" is not a sink/,
      /tenants\.acme\.audit\.sinks: "missing" is not a sink/,
    ];
    for (const pattern of expect) assert.ok(found.some((p) => pattern.test(p)), `${pattern} in:\n${found.join('\n')}`);
    assert.ok(!found.join('\n').includes('hunter2'));
  });

  it('schema errors name the field: a bad policy, a bad facility, an unknown field', () => {
    assert.ok(problems('', '    audit: { sinks: [stdout], policy: always }').some((p) => /tenants\.acme\.audit\.policy: must be one of bestEffort, required/.test(p)));
    assert.ok(problems('audit:\n  sinks:\n    s: { type: syslog, syslog: { host: a, port: 514, facility: security } }').some((p) => /audit\.sinks\.s\.syslog\.facility: must be one of kern, user/.test(p)));
    assert.ok(problems('audit:\n  sinks:\n    s: { type: stdout, colour: blue }').some((p) => /audit\.sinks\.s/.test(p)));
    assert.ok(problems('', '    audit: { sinks: [] }').some((p) => /tenants\.acme\.audit\.sinks/.test(p)));
  });

  it('plain http with a token is allowed to loopback (a sidecar collector)', () => {
    const directory = parse(`audit:\n  sinks:\n    local: { type: http, http: { url: 'http://127.0.0.1:8088/events', token: { env: T } } }`);
    assert.equal(directory.audit.sinks.get('local')?.type, 'http');
  });
});
