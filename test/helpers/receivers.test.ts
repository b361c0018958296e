/**
 * Self-tests of the audit-delivery receivers (test/helpers/rsyslog.ts, test/helpers/audit-collector.ts)
 * with plain clients, independent of Keyward: what a test later asserts about Keyward's deliveries
 * rests on these receivers parsing and reporting correctly.
 */
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { startAuditCollector, parseConcatenatedJson, type AuditCollector } from './audit-collector.js';
import { TEST_CACHE } from './emulator.js';
import { startRsyslog, type ReceivedSyslog, type RsyslogServer } from './rsyslog.js';

/** RFC 6587 octet counting: the length in bytes, a space, the message. */
function frame(message: string): string {
  return `${Buffer.byteLength(message, 'utf8')} ${message}`;
}

/** Writes the data, ends the connection and waits until the peer has closed it too. */
function sendAndClose(socket: Socket | TLSSocket, chunks: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.once('close', () => resolve());
    for (const chunk of chunks) socket.write(chunk);
    socket.end();
  });
}

function connectPlain(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function connectTls(port: number, ca: Buffer, servername: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

const PLAIN = '<86>1 2026-11-23T01:02:03.004Z host keyward 123 unwrap - {"id":"x1","tenantId":"t"}';
const WITH_SD = '<86>1 2026-11-23T01:02:04.5+02:00 kw-host.example keyward 4711 rewrap [keyward@32473 tenant="t"] {"id":"x2","tenantId":"t","note":"a } { \\" é"}';

const expectedPlain: ReceivedSyslog = {
  pri: 86,
  version: 1,
  timestamp: '2026-11-23T01:02:03.004Z',
  hostname: 'host',
  appName: 'keyward',
  procId: '123',
  msgId: 'unwrap',
  structuredData: '-',
  msg: '{"id":"x1","tenantId":"t"}',
  raw: PLAIN,
};
const expectedWithSd: ReceivedSyslog = {
  pri: 86,
  version: 1,
  timestamp: '2026-11-23T01:02:04.5+02:00',
  hostname: 'kw-host.example',
  appName: 'keyward',
  procId: '4711',
  msgId: 'rewrap',
  structuredData: '[keyward@32473 tenant="t"]',
  msg: '{"id":"x2","tenantId":"t","note":"a } { \\" é"}',
  raw: WITH_SD,
};

describe('rsyslog receiver over plain TCP', () => {
  let server: RsyslogServer;
  before(async () => {
    server = await startRsyslog({ tls: false });
  });
  after(async () => {
    await server?.close();
  });

  it('parses octet-counted RFC 5424 messages into every field, MSG in full', async () => {
    assert.equal(server.tls, false);
    // Frames split across writes, one of them mid-frame.
    const both = frame(PLAIN) + frame(WITH_SD);
    const cut = frame(PLAIN).length + 10;
    await sendAndClose(await connectPlain(server.port), [both.slice(0, cut), both.slice(cut)]);
    const received = await server.waitFor(2);
    assert.deepEqual(received, [expectedPlain, expectedWithSd]);
    assert.deepEqual(JSON.parse(received[1]!.msg), { id: 'x2', tenantId: 't', note: 'a } { " é' });
  });

  it('keeps a large JSON message whole (maxMessageSize raised)', async () => {
    const event = { id: 'big', tenantId: 't', padding: 'x'.repeat(30_000) };
    const message = `<110>1 2026-11-23T01:02:05Z host keyward - audit - ${JSON.stringify(event)}`;
    await sendAndClose(await connectPlain(server.port), [frame(message)]);
    const received = await server.waitFor(3);
    assert.equal(received.length, 3);
    assert.equal(received[2]!.pri, 110);
    assert.equal(received[2]!.procId, '-');
    assert.equal(received[2]!.timestamp, '2026-11-23T01:02:05Z');
    assert.deepEqual(JSON.parse(received[2]!.msg), event);
  });

  it('is down after stop() and receives again on the same port after start()', async () => {
    const port = server.port;
    await server.stop();
    await assert.rejects(connectPlain(port), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
    await server.start();
    assert.equal(server.port, port);
    const message = '<86>1 2026-11-23T01:03:00.000Z host keyward 123 unwrap - {"id":"x3","tenantId":"t"}';
    await sendAndClose(await connectPlain(port), [frame(message)]);
    const received = await server.waitFor(4);
    assert.equal(received.length, 4);
    assert.deepEqual(
      received.map((m) => (JSON.parse(m.msg) as { id: string }).id),
      ['x1', 'x2', 'big', 'x3'],
    );
  });

  it('waitFor() says how many arrived when too few did', async () => {
    await assert.rejects(server.waitFor(5, 200), /received 4 of 5 messages in 200 ms/);
  });
});

describe('rsyslog receiver over TLS', () => {
  let server: RsyslogServer;
  let ca: Buffer;
  before(async () => {
    server = await startRsyslog({ tls: true });
    ca = await readFile(server.caFile);
  });
  after(async () => {
    await server?.close();
  });

  it('accepts a client that verifies its certificate, and parses what it sends', async () => {
    assert.equal(server.tls, true);
    const socket = await connectTls(server.port, ca, server.serverName);
    assert.equal(socket.authorized, true);
    await sendAndClose(socket, [frame(PLAIN), frame(WITH_SD)]);
    assert.deepEqual(await server.waitFor(2), [expectedPlain, expectedWithSd]);
  });

  it('presents a certificate that fails verification for another name', async () => {
    await assert.rejects(connectTls(server.port, ca, 'keyward.invalid'), (err: NodeJS.ErrnoException) => err.code === 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('comes back on the same port, still speaking TLS', async () => {
    const port = server.port;
    await server.stop();
    await assert.rejects(connectPlain(port), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
    await server.start();
    assert.equal(server.port, port);
    const message = '<86>1 2026-11-23T01:04:00Z host keyward 123 unwrap - {"id":"x4","tenantId":"t"}';
    await sendAndClose(await connectTls(port, ca, server.serverName), [frame(message)]);
    const received = await server.waitFor(3);
    assert.deepEqual(
      received.map((m) => m.msg),
      [expectedPlain.msg, expectedWithSd.msg, '{"id":"x4","tenantId":"t"}'],
    );
  });
});

describe('parseConcatenatedJson (HEC batches)', () => {
  it('splits objects with and without whitespace between them, braces and escapes inside strings', () => {
    const text = '{"a":"}{","b":{"c":[1,{"d":2}]}}{"e":"\\"}"}\n\r\t {"f":"\\\\"}  ';
    assert.deepEqual(parseConcatenatedJson(text), [{ a: '}{', b: { c: [1, { d: 2 }] } }, { e: '"}' }, { f: '\\' }]);
    assert.deepEqual(parseConcatenatedJson(' \n'), []);
  });

  it('refuses what is not a sequence of whole objects', () => {
    assert.throws(() => parseConcatenatedJson('{"a":1}{"b":'), /unterminated/);
    assert.throws(() => parseConcatenatedJson('{"a":1},{"b":2}'), /expected '\{'/);
    assert.throws(() => parseConcatenatedJson('[{"a":1}]'), /expected '\{'/);
    assert.throws(() => parseConcatenatedJson('{"a":1 "b":2}'), SyntaxError);
  });
});

describe('audit collector over HTTP', () => {
  const token = 'collector-test-token';
  let collector: AuditCollector;
  before(async () => {
    collector = await startAuditCollector({ token });
  });
  after(async () => {
    await collector?.close();
  });

  const postJson = (body: string, auth = `Bearer ${token}`, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${collector.url}/events`, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json', ...headers }, body });
  const postHec = (body: string | Buffer, auth = `Splunk ${token}`, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${collector.url}/services/collector/event`, { method: 'POST', headers: { authorization: auth, ...headers }, body });

  it('records a generic JSON batch', async () => {
    assert.match(collector.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const events = [
      { id: 'e1', tenantId: 't1', action: 'unwrap' },
      { id: 'e2', tenantId: 't1', action: 'wrap' },
    ];
    const res = await postJson(JSON.stringify(events), undefined, { 'content-type': 'application/json; charset=utf-8' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { accepted: 2 });
    assert.deepEqual(collector.received, events.map((event) => ({ format: 'json', event })));
    assert.equal(collector.requests, 1);
  });

  it('records a HEC batch, unwrapping each envelope', async () => {
    const envelopes = [
      { time: 1795395723.004, host: 'kw-1', source: 'keyward', sourcetype: 'keyward:audit', event: { id: 'h1', note: 'a}{b' } },
      { time: 1795395724, host: 'kw-1', source: 'keyward', sourcetype: 'keyward:audit', event: { id: 'h2', note: '"}' } },
      { time: 1795395725, host: 'kw-1', source: 'keyward', sourcetype: 'keyward:audit', event: { id: 'h3' } },
    ];
    // Two back to back, the third after a newline.
    const body = `${JSON.stringify(envelopes[0])}${JSON.stringify(envelopes[1])}\n${JSON.stringify(envelopes[2])}\n`;
    const res = await postHec(body);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { text: 'Success', code: 0 });
    assert.deepEqual(
      collector.received.slice(2),
      envelopes.map((envelope) => ({ format: 'hec', event: envelope.event, envelope })),
    );
    // gzip-encoded, as a HEC client may send it.
    const gz = await postHec(gzipSync(JSON.stringify({ time: 1, event: { id: 'h4' } })), undefined, { 'content-encoding': 'gzip' });
    assert.equal(gz.status, 200);
    await collector.waitFor(6);
    assert.deepEqual(collector.received[5], { format: 'hec', event: { id: 'h4' }, envelope: { time: 1, event: { id: 'h4' } } });
  });

  it('refuses wrong credentials with 401 and records nothing', async () => {
    const before = collector.received.length;
    const requests = collector.requests;
    const wrongBearer = await postJson('[{"id":"no"}]', 'Bearer nope');
    assert.equal(wrongBearer.status, 401);
    assert.deepEqual(await wrongBearer.json(), { error: 'unauthorized' });
    const splunkOnJson = await postJson('[{"id":"no"}]', `Splunk ${token}`);
    assert.equal(splunkOnJson.status, 401);
    await splunkOnJson.arrayBuffer();
    const bearerOnHec = await postHec('{"event":{"id":"no"}}', `Bearer ${token}`);
    assert.equal(bearerOnHec.status, 401);
    assert.deepEqual(await bearerOnHec.json(), { text: 'Invalid authorization', code: 3 });
    const none = await fetch(`${collector.url}/services/collector/event`, { method: 'POST', body: '{"event":{"id":"no"}}' });
    assert.equal(none.status, 401);
    await none.arrayBuffer();
    assert.equal(collector.received.length, before);
    assert.equal(collector.requests, requests + 4);
  });

  it('refuses unparsable bodies with 400 and records nothing of the batch', async () => {
    const before = collector.received.length;
    for (const body of ['[{"id":"p1"},', '{"id":"not an array"}', '[{"id":"p2"}, 3]']) {
      const res = await postJson(body);
      assert.equal(res.status, 400, body);
      await res.arrayBuffer();
    }
    const notJsonType = await postJson('[{"id":"p3"}]', undefined, { 'content-type': 'text/plain' });
    assert.equal(notJsonType.status, 415);
    await notJsonType.arrayBuffer();
    for (const body of ['{"event":{"id":"p4"}}{"event":', '{"event":{"id":"p5"}} nonsense', '[{"event":{}}]']) {
      const res = await postHec(body);
      assert.equal(res.status, 400, body);
      assert.deepEqual(await res.json(), { text: 'Invalid data format', code: 6 });
    }
    const noEvent = await postHec('{"event":{"id":"p6"}}{"time":1}');
    assert.equal(noEvent.status, 400);
    assert.deepEqual(await noEvent.json(), { text: 'Event field is required', code: 12, 'invalid-event-number': 1 });
    assert.equal(collector.received.length, before);
  });

  it('fails the next POSTs on request, then accepts again', async () => {
    const before = collector.received.length;
    collector.failNext(2, 503);
    const first = await postJson('[{"id":"f1"}]');
    assert.equal(first.status, 503);
    assert.equal(first.headers.get('retry-after'), null);
    await first.arrayBuffer();
    const second = await postHec('{"event":{"id":"f2"}}');
    assert.equal(second.status, 503);
    assert.deepEqual(await second.json(), { text: 'Server is busy', code: 9 });
    collector.failNext(1, 429, 7);
    const limited = await postJson('[{"id":"f3"}]');
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('retry-after'), '7');
    await limited.arrayBuffer();
    assert.equal(collector.received.length, before);
    const ok = await postJson('[{"id":"f4"}]');
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    assert.deepEqual(collector.received.slice(before), [{ format: 'json', event: { id: 'f4' } }]);
  });

  it('leaves requests unanswered while hanging, answers again once unset', async () => {
    const before = collector.received.length;
    collector.hang(true);
    await assert.rejects(
      fetch(`${collector.url}/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '[{"id":"timed-out"}]',
        signal: AbortSignal.timeout(300),
      }),
      (err: Error) => err.name === 'TimeoutError',
    );
    // One still waiting when the hang is lifted gets its answer.
    const pending = postJson('[{"id":"late"}]');
    const waited = await Promise.race([pending.then(() => 'answered'), new Promise((r) => setTimeout(() => r('hanging'), 200))]);
    assert.equal(waited, 'hanging');
    collector.hang(false);
    const res = await pending;
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.deepEqual(collector.received.slice(before), [{ format: 'json', event: { id: 'late' } }]);
  });

  it('is down after stop() and accepts again on the same port after start()', async () => {
    const port = collector.port;
    const before = collector.received.length;
    await collector.stop();
    await assert.rejects(postJson('[{"id":"down"}]'), TypeError);
    await collector.start();
    assert.equal(collector.port, port);
    const res = await postHec('{"time":2,"event":{"id":"up"}}');
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    await collector.waitFor(before + 1);
    assert.deepEqual(collector.received.slice(before).map((r) => r.event), [{ id: 'up' }]);
    await assert.rejects(collector.waitFor(before + 2, 100), /received \d+ of \d+ events in 100 ms/);
  });
});

describe('audit collector over HTTPS', () => {
  it('serves the test certificate and records what a verifying client sends', async () => {
    const dir = join(TEST_CACHE, 'azure-standin');
    const [key, cert, ca] = await Promise.all(['server.key', 'server.pem', 'ca.pem'].map((f) => readFile(join(dir, f))));
    const collector = await startAuditCollector({ tls: { key: key!, cert: cert! }, token: 'tls-token' });
    try {
      assert.match(collector.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const body = JSON.stringify([{ id: 's1', tenantId: 't' }]);
      const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = httpsRequest(
          `${collector.url}/events`,
          { method: 'POST', ca, headers: { authorization: 'Bearer tls-token', 'content-type': 'application/json' } },
          (res) => {
            let data = '';
            res.setEncoding('utf8').on('data', (chunk: string) => (data += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text: data }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      assert.equal(status, 200);
      assert.deepEqual(JSON.parse(text), { accepted: 1 });
      assert.deepEqual(collector.received, [{ format: 'json', event: { id: 's1', tenantId: 't' } }]);
    } finally {
      await collector.close();
    }
  });
});
