/**
 * Classification of Cloud KMS failures (kms-errors.md, Google section), case by case, on
 * the shapes the client hands over: a grpc-js status error (numeric `code`, `details`,
 * trailing `metadata`) passed through google-gax's own `GoogleError.parseGRPCStatusDetails`,
 * which promotes google.rpc.ErrorInfo into `reason` and decodes `statusDetails`; and the
 * errors of the credential plugin (google-auth-library) as grpc-js reports them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { GoogleError } from 'google-gax';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import { classifyGcpError, providerMessageForLog, retryDelaySeconds, type GcpOperation } from '../../../src/kms/drivers/gcp-errors.js';
import { Faults, statusMetadata, type Fault } from '../../helpers/gcp-kms-standin.js';

const KEY = 'projects/acme/locations/europe-west1/keyRings/tenants/cryptoKeys/tenant-42';
const VERSION = `${KEY}/cryptoKeyVersions/3`;

/** What grpc-js rejects a unary call with (call.ts callErrorFromStatus), then gax's decoration. */
function grpcError(fault: Fault): GoogleError {
  const err = Object.assign(new Error(`${fault.code} ${grpc.status[fault.code]}: ${fault.message}`), {
    code: fault.code,
    details: fault.message,
    metadata: statusMetadata(fault),
  });
  return GoogleError.parseGRPCStatusDetails(err as unknown as GoogleError);
}

/** A failure of the call-credentials plugin, as grpc-js's load-balancing call reports it. */
function pluginError(message: string, code: number = grpc.status.UNKNOWN): GoogleError {
  return grpcError({ code, message: `Getting metadata from plugin failed with error: ${message}` });
}

function classify(err: unknown, operation: GcpOperation = 'decrypt'): KmsError {
  return classifyGcpError(err, { operation, keyName: KEY });
}

function expectKind(err: unknown, kind: KmsFailureKind, operation: GcpOperation = 'decrypt'): KmsError {
  const result = classify(err, operation);
  assert.ok(result instanceof KmsError);
  assert.equal(result.kind, kind, `expected ${kind}, got ${result.kind}: ${result.message}`);
  assert.equal(result.cause, err, 'the provider error is kept as the cause');
  const details = (err as { details?: string }).details;
  if (details !== undefined && details.length > 20) assert.ok(!result.message.includes(details), 'our message never copies the provider text');
  return result;
}

describe('Cloud KMS error classification', () => {
  describe('refused: credentials invalid or access revoked', () => {
    it('16 UNAUTHENTICATED', () => {
      const result = expectKind(grpcError(Faults.unauthenticated()), 'refused', 'encrypt');
      assert.match(result.message, /UNAUTHENTICATED/);
      assert.equal(result.retryable, false);
    });

    it('7 PERMISSION_DENIED with IAM_PERMISSION_DENIED (a revoked grant and a deleted key look alike)', () => {
      const err = grpcError(Faults.permissionDenied(KEY, 'cloudkms.cryptoKeyVersions.useToDecrypt'));
      assert.equal(err.reason, 'IAM_PERMISSION_DENIED', 'gax promoted the ErrorInfo reason');
      const result = expectKind(err, 'refused');
      assert.match(result.message, new RegExp(KEY));
    });

    it('7 PERMISSION_DENIED without any detail', () => {
      expectKind(grpcError({ code: grpc.status.PERMISSION_DENIED, message: 'The caller does not have permission' }), 'refused');
    });

    for (const message of [
      'invalid_grant: Invalid JWT Signature.',
      'invalid_grant: Account not found',
      'unauthorized_client: Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
      'Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.',
      'invalid_client: The OAuth client was not found.',
    ]) {
      it(`2 UNKNOWN from the credential plugin: ${message.slice(0, 40)}…`, () => {
        expectKind(pluginError(message), 'refused', 'encrypt');
      });
    }

    it('no default credentials when the client starts (a plain Error from google-auth-library)', () => {
      const err = new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.');
      expectKind(err, 'refused', 'connect');
    });
  });

  describe('account_issue: billing or the API disabled', () => {
    it('7 with reason BILLING_DISABLED', () => {
      const result = expectKind(grpcError(Faults.billingDisabled()), 'account_issue', 'encrypt');
      assert.match(result.message, /BILLING_DISABLED/);
      assert.equal(result.retryable, false);
    });

    it('7 with reason SERVICE_DISABLED', () => {
      expectKind(grpcError(Faults.serviceDisabled()), 'account_issue');
    });

    it('7 whose only marker is the "API has not been used … or it is disabled" wording', () => {
      const { message } = Faults.serviceDisabled();
      expectKind(grpcError({ code: grpc.status.PERMISSION_DENIED, message }), 'account_issue');
    });
  });

  describe('key_unusable: key version not enabled, key not found', () => {
    for (const state of ['DISABLED', 'DESTROYED', 'DESTROY_SCHEDULED']) {
      it(`9 FAILED_PRECONDITION "… is not enabled, current state is: ${state}"`, () => {
        const err = grpcError({ code: grpc.status.FAILED_PRECONDITION, message: `${VERSION} is not enabled, current state is: ${state}.` });
        const result = expectKind(err, 'key_unusable', 'encrypt');
        assert.match(result.message, new RegExp(`is ${state} \\(FAILED_PRECONDITION\\)`));
        assert.equal(result.retryable, false);
      });
    }

    it('5 NOT_FOUND', () => {
      expectKind(grpcError({ code: grpc.status.NOT_FOUND, message: `CryptoKey ${KEY} not found.` }), 'key_unusable', 'encrypt');
    });
  });

  describe('bad_ciphertext', () => {
    it('3 INVALID_ARGUMENT "Decryption failed …" on decrypt (wrong key, wrong AAD, corrupt blob)', () => {
      const err = grpcError({ code: grpc.status.INVALID_ARGUMENT, message: "Decryption failed: verify that 'name' refers to the correct CryptoKey." });
      const result = expectKind(err, 'bad_ciphertext');
      assert.equal(result.retryable, false);
    });

    it('other INVALID_ARGUMENTs are not a bad ciphertext (a malformed request is ours)', () => {
      expectKind(grpcError({ code: grpc.status.INVALID_ARGUMENT, message: 'The plaintext must be no larger than 64KiB.' }), 'other', 'encrypt');
      expectKind(grpcError({ code: grpc.status.INVALID_ARGUMENT, message: 'Decryption failed: something' }), 'other', 'encrypt');
    });
  });

  describe('unreachable: transport, timeouts, server faults', () => {
    for (const [code, name] of [
      [grpc.status.UNAVAILABLE, 'UNAVAILABLE'],
      [grpc.status.DEADLINE_EXCEEDED, 'DEADLINE_EXCEEDED'],
      [grpc.status.INTERNAL, 'INTERNAL'],
      [grpc.status.ABORTED, 'ABORTED'],
      [grpc.status.CANCELLED, 'CANCELLED'],
      [grpc.status.UNKNOWN, 'UNKNOWN'],
      [grpc.status.DATA_LOSS, 'DATA_LOSS'],
    ] as const) {
      it(`${code} ${name}`, () => {
        const result = expectKind(grpcError({ code, message: 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1' }), 'unreachable');
        assert.equal(result.retryable, true);
      });
    }

    it('3 INVALID_ARGUMENT checksum mismatch: the request was damaged in transit', () => {
      const err = grpcError({ code: grpc.status.INVALID_ARGUMENT, message: 'The checksum in field ciphertext_crc32c did not match the data in field ciphertext.' });
      const result = expectKind(err, 'unreachable');
      assert.match(result.message, /damaged in transit/);
    });

    for (const message of [
      'request to https://oauth2.googleapis.com/token failed, reason: connect ECONNREFUSED 142.250.1.1:443',
      'request to https://oauth2.googleapis.com/token failed, reason: getaddrinfo ENOTFOUND oauth2.googleapis.com',
      'request to https://oauth2.googleapis.com/token failed, reason: getaddrinfo EAI_AGAIN oauth2.googleapis.com',
      'Request failed with status code 503',
      'invalid_grant: … (but the socket hung up: ECONNRESET)',
    ]) {
      it(`a credential plugin that cannot reach its token endpoint is unreachable, never refused: ${message.slice(0, 48)}…`, () => {
        expectKind(pluginError(message), 'unreachable', 'encrypt');
      });
    }

    it('a plugin error grpc-js restricted to INTERNAL ("Invalid status from control plane") is read by its text', () => {
      const restricted = (inner: string): GoogleError =>
        grpcError({ code: grpc.status.INTERNAL, message: `Invalid status from control plane: 5 NOT_FOUND Getting metadata from plugin failed with error: ${inner}` });
      expectKind(restricted('connect ETIMEDOUT 10.0.0.1:443'), 'unreachable');
      expectKind(restricted('invalid_grant: Bad Request'), 'refused');
    });

    it('an abort and a Node socket error with no gRPC status', () => {
      expectKind(Object.assign(new Error('The operation was aborted'), { name: 'AbortError' }), 'unreachable');
      expectKind(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'unreachable');
    });
  });

  describe('throttled', () => {
    it('8 RESOURCE_EXHAUSTED without RetryInfo: retryable, one second estimated', () => {
      const result = expectKind(grpcError(Faults.quotaExceeded()), 'throttled', 'encrypt');
      assert.equal(result.retryable, true);
      assert.equal(result.retryAfterSeconds, 1);
    });

    it('8 RESOURCE_EXHAUSTED with google.rpc.RetryInfo: its delay is the Retry-After', () => {
      const err = grpcError(Faults.quotaExceeded(2.5));
      assert.equal(retryDelaySeconds(err.statusDetails as unknown[]), 2.5);
      assert.equal(expectKind(err, 'throttled').retryAfterSeconds, 2.5);
    });

    it('throttling is decided before account markers', () => {
      const err = grpcError({ ...Faults.quotaExceeded(), errorInfo: { reason: 'BILLING_DISABLED', domain: 'googleapis.com' } });
      expectKind(err, 'throttled');
    });
  });

  describe('other', () => {
    it('12 UNIMPLEMENTED (not a Cloud KMS endpoint), 6 ALREADY_EXISTS, 11 OUT_OF_RANGE', () => {
      expectKind(grpcError({ code: grpc.status.UNIMPLEMENTED, message: 'Method not found' }), 'other', 'encrypt');
      expectKind(grpcError({ code: grpc.status.ALREADY_EXISTS, message: 'exists' }), 'other', 'encrypt');
      expectKind(grpcError({ code: grpc.status.OUT_OF_RANGE, message: 'range' }), 'other', 'encrypt');
    });

    it('a credential plugin failing for a reason we do not know', () => {
      expectKind(pluginError('error:1E08010C:DECODER routines::unsupported'), 'other', 'encrypt');
    });

    it('anything that is not an error at all', () => {
      const result = classify('boom');
      assert.equal(result.kind, 'other');
      assert.equal(classify(new TypeError('x')).kind, 'other');
    });

    it('a KmsError passes through unchanged', () => {
      const original = new KmsError('bad_ciphertext', 'ours');
      assert.equal(classify(original), original);
    });
  });

  describe('the provider message, for the log', () => {
    it('keeps resource names and the gist', () => {
      const text = providerMessageForLog(grpcError(Faults.permissionDenied(KEY, 'cloudkms.cryptoKeyVersions.useToEncrypt')));
      assert.match(text!, new RegExp(`Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource '${KEY}'`));
    });

    it('strips private keys, tokens, JWTs and long opaque runs', () => {
      const secrets = {
        pem: '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----',
        token: 'ya29.a0AfH6SMBx3-very_secret_token.part',
        jwt: 'eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJzYUBwLmlhbS5nc2VydmljZWFjY291bnQuY29tIn0.c2lnbmF0dXJl',
        opaque: 'q2Vx9Lr0Wm4Tz8Yb1Nc7Hd3Jf6Kg5Pa0Sb2Ue4Vi',
      };
      const err = pluginError(
        `invalid_grant: bad assertion ${secrets.jwt} for {"private_key": "${secrets.pem}"} with Bearer ${secrets.token} and ${secrets.opaque} on ${KEY}`,
      );
      const text = providerMessageForLog(err)!;
      for (const secret of Object.values(secrets)) assert.ok(!text.includes(secret), `leaked: ${secret.slice(0, 20)}`);
      assert.ok(!text.includes('MIIEvQIBADANBg'));
      assert.ok(text.includes(KEY), 'the key name stays');
      assert.match(text, /invalid_grant/);
    });

    it('is bounded in length and absent for non-objects', () => {
      assert.ok(providerMessageForLog(new Error('x '.repeat(2000)))!.length <= 401);
      assert.equal(providerMessageForLog('text'), undefined);
    });
  });
});
