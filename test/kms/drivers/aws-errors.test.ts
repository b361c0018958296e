/**
 * The AWS classification table of kms-errors.md, error by error, on the shapes the real
 * SDK throws: its own exception classes (modelled errors), its base exception named by the
 * error code (unmodelled ones: AccessDeniedException, ThrottlingException, …), Node
 * network errors as the SDK passes them on (with `$metadata` and no status), abort and
 * timeout errors, and the credential provider's error.
 *
 * Then the same classes through the real SDK and the real driver, against a loopback stub
 * that answers exactly as AWS KMS does on the wire (AWS JSON 1.1 errors: `__type`,
 * `message`, `x-amzn-RequestId`), for what local-kms cannot produce: refused credentials,
 * throttling with Retry-After, clock skew, 5xx, IncorrectKeyException, an XKS proxy timeout.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import {
  DependencyTimeoutException,
  DisabledException,
  IncorrectKeyException,
  InvalidArnException,
  InvalidCiphertextException,
  InvalidKeyUsageException,
  KMSInternalException,
  KMSInvalidStateException,
  KMSServiceException,
  KeyUnavailableException,
  LimitExceededException,
  NotFoundException,
} from '@aws-sdk/client-kms';
import { CredentialsProviderError } from '@smithy/core/config';
import pino from 'pino';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import { awsErrorFacts, awsProviderMessage, classifyAwsError, parseRetryAfter, type AwsErrorContext } from '../../../src/kms/drivers/aws-errors.js';
import { createAwsDriver } from '../../../src/kms/drivers/aws.js';
import { edekAad } from '../../../src/envelope/aad.js';

const KEY = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const context: AwsErrorContext = { operation: 'unwrap', keyId: KEY };
// Secrets that a provider message might echo; they must never reach our messages.
const ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
const SECRET_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

const meta = (httpStatusCode?: number) => ({ httpStatusCode, requestId: 'c0ffee00-1111-2222-3333-444455556666', attempts: 1, totalRetryDelay: 0 });

/** An unmodelled error as the SDK builds it: the service's base exception, named by the error code. */
function unmodelled(name: string, message: string, status = 400): KMSServiceException {
  return new KMSServiceException({ name, $fault: status >= 500 ? 'server' : 'client', $metadata: meta(status), message });
}

/** A Node network error as it reaches the caller through the SDK (it adds `$metadata`, no status). */
function networkError(code: string, message: string): Error {
  const err = Object.assign(new Error(message), { code, errno: -1, syscall: 'connect', $metadata: { attempts: 1, totalRetryDelay: 0 } });
  return err;
}

function named(name: string, message: string): Error {
  const err = new Error(message);
  err.name = name;
  return err;
}

const ARGS = (message: string, status = 400) => ({ message, $metadata: meta(status) });

/** kms-errors.md, AWS section. */
const TABLE: readonly (readonly [label: string, err: () => unknown, kind: KmsFailureKind])[] = [
  // REFUSED
  ['UnrecognizedClientException', () => unmodelled('UnrecognizedClientException', `The security token included in the request is invalid. ${ACCESS_KEY_ID}`), 'refused'],
  ['InvalidSignatureException', () => unmodelled('InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.'), 'refused'],
  ['ExpiredTokenException', () => unmodelled('ExpiredTokenException', 'The security token included in the request is expired'), 'refused'],
  [
    'AccessDeniedException',
    () => unmodelled('AccessDeniedException', `User: arn:aws:iam::111122223333:user/keyward is not authorized to perform: kms:Decrypt on resource: ${KEY}`),
    'refused',
  ],
  ['CredentialsProviderError', () => new CredentialsProviderError('Could not load credentials from any providers', { tryNextLink: false }), 'refused'],
  ['STS AccessDenied (assumeRole)', () => Object.assign(named('AccessDenied', 'not authorized to perform: sts:AssumeRole'), { $metadata: meta(403), $fault: 'client' }), 'refused'],
  // "Signature expired" is clock skew, not a refusal.
  [
    'InvalidSignatureException: Signature expired',
    () => unmodelled('InvalidSignatureException', 'Signature expired: 20240101T000000Z is now earlier than 20240101T000500Z (20240101T001000Z - 5 min.)'),
    'unreachable',
  ],
  // A credential provider that failed on the network (identity endpoint down) is an outage.
  ['CredentialsProviderError: network', () => new CredentialsProviderError('connect ETIMEDOUT 169.254.169.254:80', { tryNextLink: false }), 'unreachable'],
  // KEY_UNUSABLE
  ['DisabledException', () => new DisabledException(ARGS(`${KEY} is disabled.`)), 'key_unusable'],
  ['KMSInvalidStateException (pending deletion)', () => new KMSInvalidStateException(ARGS(`${KEY} is pending deletion.`)), 'key_unusable'],
  ['NotFoundException', () => new NotFoundException(ARGS(`Key '${KEY}' does not exist`)), 'key_unusable'],
  ['InvalidKeyUsageException', () => new InvalidKeyUsageException(ARGS(`${KEY} key usage is SIGN_VERIFY which is not valid for Encrypt.`)), 'key_unusable'],
  ['InvalidArnException', () => new InvalidArnException(ARGS('Invalid arn')), 'key_unusable'],
  // External key store proxy timeouts arrive as KMSInvalidStateException naming the proxy.
  [
    'KMSInvalidStateException (XKS proxy timeout)',
    () => new KMSInvalidStateException(ARGS('The external key store proxy did not respond to the request within the timeout period. Retry the request.')),
    'unreachable',
  ],
  // BAD_CIPHERTEXT
  ['InvalidCiphertextException', () => new InvalidCiphertextException(ARGS('')), 'bad_ciphertext'],
  ['IncorrectKeyException', () => new IncorrectKeyException(ARGS('The key ID in the request does not identify a CMK that can perform this operation.')), 'bad_ciphertext'],
  // UNREACHABLE
  ['KMSInternalException', () => new KMSInternalException({ message: 'internal', $metadata: meta(500) }), 'unreachable'],
  ['DependencyTimeoutException', () => new DependencyTimeoutException({ message: 'timeout', $metadata: meta(503) }), 'unreachable'],
  ['KeyUnavailableException', () => new KeyUnavailableException({ message: 'unavailable', $metadata: meta(500) }), 'unreachable'],
  ['any 5xx (unmodelled 502)', () => unmodelled('BadGateway', 'Bad Gateway', 502), 'unreachable'],
  ['any 5xx (503 ServiceUnavailable)', () => unmodelled('ServiceUnavailable', 'Service Unavailable', 503), 'unreachable'],
  ['ECONNREFUSED', () => networkError('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.1:443'), 'unreachable'],
  ['ENOTFOUND', () => networkError('ENOTFOUND', 'getaddrinfo ENOTFOUND kms.eu-west-1.amazonaws.com'), 'unreachable'],
  ['EAI_AGAIN', () => networkError('EAI_AGAIN', 'getaddrinfo EAI_AGAIN kms.eu-west-1.amazonaws.com'), 'unreachable'],
  ['EHOSTUNREACH', () => networkError('EHOSTUNREACH', 'connect EHOSTUNREACH 10.0.0.1:443'), 'unreachable'],
  ['ENETUNREACH', () => networkError('ENETUNREACH', 'connect ENETUNREACH 10.0.0.1:443'), 'unreachable'],
  ['ECONNRESET', () => networkError('ECONNRESET', 'socket hang up'), 'unreachable'],
  [
    'AggregateError (happy eyeballs) of ECONNREFUSED',
    () => Object.assign(new AggregateError([networkError('ECONNREFUSED', 'connect ECONNREFUSED ::1:443'), networkError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:443')], ''), { $metadata: { attempts: 1 } }),
    'unreachable',
  ],
  ['TimeoutError (connection timeout)', () => Object.assign(named('TimeoutError', 'Socket timed out without establishing a connection within 5000 ms'), { $metadata: { attempts: 1 } }), 'unreachable'],
  ['TimeoutError (throwOnRequestTimeout)', () => named('TimeoutError', 'Request did not complete within 30000 ms'), 'unreachable'],
  ['AbortError (our signal)', () => named('AbortError', 'Request aborted'), 'unreachable'],
  ['DOMException AbortError', () => new DOMException('This operation was aborted', 'AbortError'), 'unreachable'],
  // THROTTLED
  ['ThrottlingException', () => unmodelled('ThrottlingException', 'Rate exceeded'), 'throttled'],
  ['LimitExceededException', () => new LimitExceededException(ARGS('Too many requests')), 'throttled'],
  ['any 429', () => unmodelled('TooManyRequests', 'slow down', 429), 'throttled'],
  // Account markers (AWS common errors; kms-errors.md names none for AWS).
  ['OptInRequired', () => unmodelled('OptInRequired', 'The AWS Access Key Id needs a subscription for the service', 403), 'account_issue'],
  // OTHER
  ['ValidationException', () => unmodelled('ValidationException', '1 validation error detected'), 'other'],
  ['a plain Error', () => new Error('something odd'), 'other'],
  ['a non-Error value', () => 'a string', 'other'],
];

describe('classifyAwsError: the kms-errors.md table', () => {
  for (const [label, make, kind] of TABLE) {
    it(`${label} → ${kind}`, () => {
      const err = make();
      const classified = classifyAwsError(err, context);
      assert.ok(classified instanceof KmsError);
      assert.equal(classified.kind, kind, `${label}: ${classified.message}`);
      assert.equal(classified.cause, err, 'the provider error is kept as cause');
      for (const secret of [ACCESS_KEY_ID, SECRET_KEY]) assert.ok(!classified.message.includes(secret), classified.message);
    });
  }

  it('passes a KmsError through unchanged', () => {
    const ours = new KmsError('bad_ciphertext', 'ours');
    assert.equal(classifyAwsError(ours, context), ours);
  });

  it('checks transport before anything else, and throttling before auth', () => {
    // A network failure met on the credential path is still an outage (rule 3).
    const net = Object.assign(new CredentialsProviderError('cannot fetch', { tryNextLink: false }), { code: 'ECONNREFUSED' });
    assert.equal(classifyAwsError(net, context).kind, 'unreachable');
    // A 429 whose code happens to read like an auth failure is throttling.
    assert.equal(classifyAwsError(unmodelled('AccessDeniedException', 'slow down', 429), context).kind, 'throttled');
  });

  it("honours a throttled answer's Retry-After header (seconds or HTTP date)", () => {
    const err = unmodelled('ThrottlingException', 'Rate exceeded');
    Object.defineProperty(err, '$response', { value: { statusCode: 400, headers: { 'retry-after': '7' } }, enumerable: false });
    const classified = classifyAwsError(err, context);
    assert.equal(classified.kind, 'throttled');
    assert.equal(classified.retryAfterSeconds, 7);
    assert.equal(parseRetryAfter(new Date(Date.now() + 4_000).toUTCString()) !== undefined, true);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(classifyAwsError(unmodelled('ThrottlingException', 'Rate exceeded'), context).retryAfterSeconds, undefined);
  });

  it('names the key and the operation, never the provider text', () => {
    const classified = classifyAwsError(new DisabledException(ARGS(`${KEY} is disabled. ${SECRET_KEY}`)), { operation: 'wrap', keyId: 'alias/tenant-a' });
    assert.match(classified.message, /alias\/tenant-a/);
    assert.match(classified.message, /Encrypt/);
    assert.match(classified.message, /DisabledException/);
    assert.ok(!classified.message.includes(SECRET_KEY));
  });

  it('reads structured facts and redacts the provider message for logs', () => {
    const err = unmodelled('AccessDeniedException', `denied for ${ACCESS_KEY_ID} with SecretAccessKey=${SECRET_KEY} on ${KEY}`);
    const facts = awsErrorFacts(err);
    assert.equal(facts.name, 'AccessDeniedException');
    assert.equal(facts.httpStatus, 400);
    assert.equal(facts.requestId, 'c0ffee00-1111-2222-3333-444455556666');
    const logged = awsProviderMessage(err);
    assert.ok(!logged.includes(ACCESS_KEY_ID), logged);
    assert.ok(!logged.includes(SECRET_KEY), logged);
    assert.ok(logged.includes(KEY), 'ARNs stay readable');
    assert.equal(awsErrorFacts(named('<script>', 'x')).name, 'Error', 'odd names are not shown');
  });
});

// ---------------------------------------------------------------------------------------
// Through the real SDK and driver, against a stub speaking AWS KMS's wire format.
// ---------------------------------------------------------------------------------------

/** A well-formed format-1 driver blob around random bytes, so the call reaches the stub. */
function fakeBlob(): Buffer {
  const ciphertext = randomBytes(60);
  return Buffer.concat([Buffer.of(1), createHash('sha256').update(ciphertext).digest().subarray(0, 8), ciphertext]);
}

interface StubAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers?: Record<string, string>;
}

describe('AWS driver over the real SDK: errors as AWS KMS sends them', () => {
  let server: Server;
  let endpoint: string;
  let answer: StubAnswer = { status: 500, body: '' };
  const requests: { target: string | undefined; body: Record<string, unknown> }[] = [];
  const logLines: string[] = [];
  const ctx = {
    logger: pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) }),
    env: { AWS_KEY: ACCESS_KEY_ID, AWS_SECRET: SECRET_KEY },
  };

  before(async () => {
    server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        requests.push({ target: req.headers['x-amz-target'] as string | undefined, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown> });
        res.writeHead(answer.status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'c0ffee00-1111-2222-3333-444455556666', ...answer.headers });
        res.end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const driver = () =>
    createAwsDriver(
      { region: 'eu-west-1', keyId: KEY, endpoint, credentials: { type: 'static', accessKeyId: { env: 'AWS_KEY' }, secretAccessKey: { env: 'AWS_SECRET' } } },
      ctx,
    );
  const error = (type: string, message: string, status = 400, headers?: Record<string, string>): StubAnswer => ({
    status,
    body: JSON.stringify({ __type: type, message }),
    ...(headers ? { headers } : {}),
  });

  const CASES: readonly (readonly [label: string, answer: StubAnswer, kind: KmsFailureKind, retryAfter?: number])[] = [
    ['AccessDeniedException', error('AccessDeniedException', `User: arn:aws:iam::111122223333:user/keyward is not authorized to perform: kms:Decrypt on resource: ${KEY}`), 'refused'],
    ['UnrecognizedClientException', error('UnrecognizedClientException', 'The security token included in the request is invalid.'), 'refused'],
    ['ExpiredTokenException', error('ExpiredTokenException', 'The security token included in the request is expired'), 'refused'],
    ['InvalidSignatureException', error('InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.'), 'refused'],
    ['Signature expired (clock skew)', error('InvalidSignatureException', 'Signature expired: 20240101T000000Z is now earlier than 20240101T000500Z'), 'unreachable'],
    ['ThrottlingException', error('ThrottlingException', 'Rate exceeded'), 'throttled'],
    ['429 with Retry-After', error('ThrottlingException', 'Rate exceeded', 429, { 'retry-after': '3' }), 'throttled', 3],
    ['IncorrectKeyException (namespaced __type)', error('com.amazonaws.kms#IncorrectKeyException', 'The key ID in the request does not identify a CMK that can perform this operation.'), 'bad_ciphertext'],
    ['DisabledException', error('DisabledException', `${KEY} is disabled.`), 'key_unusable'],
    ['XKS proxy timeout', error('KMSInvalidStateException', 'The external key store proxy did not respond to the request within the timeout period.'), 'unreachable'],
    ['KMSInternalException', error('KMSInternalException', 'internal', 500), 'unreachable'],
    ['503 with an HTML body', { status: 503, body: '<html><body>Service Unavailable</body></html>', headers: { 'content-type': 'text/html' } }, 'unreachable'],
  ];

  for (const [label, stub, kind, retryAfter] of CASES) {
    it(`${label} → ${kind}`, async () => {
      answer = stub;
      const d = await driver();
      try {
        const before = requests.length;
        await assert.rejects(d.unwrap(fakeBlob(), edekAad('tenant-a', 3)), (err: unknown) => {
          assert.ok(err instanceof KmsError, String(err));
          assert.equal(err.kind, kind, err.message);
          if (retryAfter !== undefined) assert.equal(err.retryAfterSeconds, retryAfter);
          for (const secret of [ACCESS_KEY_ID, SECRET_KEY]) assert.ok(!err.message.includes(secret));
          return true;
        });
        assert.equal(requests.length - before, 1, 'exactly one request: the SDK does not retry');
      } finally {
        await d.close();
      }
    });
  }

  it('sends Decrypt with the KeyId and the full encryption context, and logs the provider words redacted', async () => {
    answer = error('AccessDeniedException', `denied; ${ACCESS_KEY_ID} is not allowed on ${KEY}`);
    const d = await driver();
    await assert.rejects(d.unwrap(fakeBlob(), edekAad('tenant-a', 3)), KmsError);
    await d.close();
    const last = requests.at(-1)!;
    assert.equal(last.target, 'TrentService.Decrypt');
    assert.equal(last.body.KeyId, KEY);
    assert.deepEqual(last.body.EncryptionContext, {
      'keyward:aad': edekAad('tenant-a', 3).toString('base64'),
      'keyward:tenant': 'tenant-a',
      'keyward:kmsConfigId': '3',
    });
    const log = logLines.join('');
    assert.match(log, /AccessDeniedException/);
    assert.match(log, /c0ffee00-1111-2222-3333-444455556666/, 'the AWS request id is logged for support cases');
    for (const secret of [ACCESS_KEY_ID, SECRET_KEY]) assert.ok(!log.includes(secret), 'no credential in any log line');
  });
});
