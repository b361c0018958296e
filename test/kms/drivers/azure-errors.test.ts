/**
 * Unit tests of the Azure classification in kms-errors.md, on errors shaped exactly as
 * @azure/keyvault-keys 4.10 and @azure/identity 4.13 throw them for the *real service's* answers:
 * a `RestError` whose `code` is the body's `error.code` and whose `details` is the deserialised
 * body (`{ error: { code, message, innerError } }`), with the answer's headers on `response`.
 * The bodies are the ones the service documents or is seen to send (e.g. 403 Forbidden with inner
 * `KeyDisabled`, which lowkey-vault answers with a 500 instead).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RestError, createHttpHeaders, createPipelineRequest } from '@azure/core-rest-pipeline';
import { AggregateAuthenticationError, AuthenticationError, AuthenticationRequiredError, CredentialUnavailableError } from '@azure/identity';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import { classifyAzureError, innerErrorCode, retryAfterSeconds, type AzureErrorContext } from '../../../src/kms/drivers/azure-errors.js';

const unwrapCtx: AzureErrorContext = { operation: 'unwrap', vaultUrl: 'https://acme.vault.azure.net', keyName: 'tenant-mk' };
const wrapCtx: AzureErrorContext = { ...unwrapCtx, operation: 'wrap' };

const request = createPipelineRequest({ url: 'https://acme.vault.azure.net/keys/tenant-mk/0123abcd/unwrapkey?api-version=2025-07-01', method: 'POST' });

/** A service answer as the SDK turns it into an error (api/operations.ts: createRestError + keyVaultErrorDeserializer). */
function serviceError(status: number, code: string | undefined, message: string, inner?: string, headers: Record<string, string> = {}): RestError {
  const err = new RestError(message, { statusCode: status, code, request, response: { headers: createHttpHeaders(headers), request, status } });
  err.details = { error: { code, message, innerError: inner === undefined ? undefined : { code: inner, message: undefined, innerError: undefined } } };
  return err;
}

/** No answer at all: core-rest-pipeline's transport failure. */
function transportError(code: string, message: string): RestError {
  return new RestError(message, { code, request });
}

function expectKind(err: unknown, kind: KmsFailureKind, context: AzureErrorContext = unwrapCtx): KmsError {
  const classified = classifyAzureError(err, context);
  assert.ok(classified instanceof KmsError);
  assert.equal(classified.kind, kind, `expected ${kind}, got ${classified.kind}: ${classified.message}`);
  assert.equal(classified.cause, err, 'the provider error is kept as cause');
  return classified;
}

describe('classifyAzureError: Key Vault service answers', () => {
  it('401 Unauthorized (missing, expired or revoked token) → refused', () => {
    const err = expectKind(serviceError(401, 'Unauthorized', 'AKV10032: Invalid issuer. Expected one of https://sts.windows.net/…'), 'refused');
    assert.match(err.message, /acme\.vault\.azure\.net refused the credentials while unwrapping \(HTTP 401 Unauthorized\)/);
  });

  it('403 Forbidden without a key-state inner code (RBAC, access policy, firewall) → refused', () => {
    expectKind(
      serviceError(403, 'Forbidden', "Caller is not authorized to perform action on resource.\r\nAction: 'Microsoft.KeyVault/vaults/keys/unwrap/action'", 'ForbiddenByRbac'),
      'refused',
    );
    expectKind(
      serviceError(403, 'Forbidden', "The user, group or application 'appid=…' does not have keys unwrapKey permission on key vault 'acme;location=westeurope'.", 'AccessDenied'),
      'refused',
    );
    expectKind(serviceError(403, 'Forbidden', 'Client address is not authorized and caller is not a trusted service.', 'ForbiddenByFirewall'), 'refused');
    expectKind(serviceError(403, 'Forbidden', 'Access denied.'), 'refused');
  });

  it('403 Forbidden with inner KeyDisabled ("Operation unwrapKey is not allowed on a disabled key.") → key_unusable', () => {
    const err = expectKind(serviceError(403, 'Forbidden', 'Operation unwrapKey is not allowed on a disabled key.', 'KeyDisabled'), 'key_unusable');
    assert.match(err.message, /key 'tenant-mk' in vault acme\.vault\.azure\.net is disabled.*HTTP 403 Forbidden\/KeyDisabled/);
    // The same answer when only the text says so (no inner code), and the expired sibling.
    expectKind(serviceError(403, 'Forbidden', 'Operation wrapKey is not allowed on a disabled key.'), 'key_unusable', wrapCtx);
    expectKind(serviceError(403, 'Forbidden', 'Operation wrapKey is not allowed on an expired key.'), 'key_unusable', wrapCtx);
    expectKind(serviceError(403, 'Forbidden', 'Operation wrapKey is not permitted on this key.', 'KeyOperationForbidden'), 'key_unusable', wrapCtx);
  });

  it('reads the inner code from the raw body when the SDK left no details', () => {
    const err = new RestError('Operation unwrapKey is not allowed on a disabled key.', {
      statusCode: 403,
      code: 'Forbidden',
      request,
      response: {
        headers: createHttpHeaders(),
        request,
        status: 403,
        bodyAsText: JSON.stringify({ error: { code: 'Forbidden', message: 'x', innererror: { code: 'KeyDisabled' } } }),
      },
    });
    assert.equal(innerErrorCode(err), 'KeyDisabled');
    expectKind(err, 'key_unusable');
  });

  it('404 KeyNotFound → key_unusable', () => {
    const err = expectKind(
      serviceError(404, 'KeyNotFound', 'A key with (name/id) tenant-mk was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command.'),
      'key_unusable',
    );
    assert.match(err.message, /key 'tenant-mk' was not found in vault acme\.vault\.azure\.net \(HTTP 404 KeyNotFound\)/);
  });

  it('400 BadParameter with the OAEP decoding message on unwrap → bad_ciphertext; other BadParameter → other', () => {
    expectKind(serviceError(400, 'BadParameter', 'Error occurred while decoding OAEP padding.'), 'bad_ciphertext');
    expectKind(serviceError(400, 'BadParameter', 'The length of the data to decrypt is not valid for the size of this key.'), 'bad_ciphertext');
    // BadParameter also covers malformed requests: that is not the EDEK's fault.
    expectKind(serviceError(400, 'BadParameter', "Content of 'value' is not base64url.\r\nProperty 'value' is required.\r\n"), 'other');
    expectKind(serviceError(400, 'BadParameter', 'The specified version (1.0) is not recognized. Consider using the latest supported version (2025-07-01).'), 'other');
    // Never a ciphertext problem on wrap.
    expectKind(serviceError(400, 'BadParameter', 'Error occurred while decoding OAEP padding.'), 'other', wrapCtx);
  });

  it('429 Throttled → throttled, with the Retry-After seconds', () => {
    const err = expectKind(
      serviceError(429, 'Throttled', 'Request was not processed because too many requests were received. Reason: A1', undefined, { 'Retry-After': '7' }),
      'throttled',
    );
    assert.equal(err.retryAfterSeconds, 7);
    assert.equal(err.retryable, true);
    const noHint = expectKind(serviceError(429, 'Throttled', 'Too many requests.'), 'throttled');
    assert.equal(noHint.retryAfterSeconds, undefined);
  });

  it('Retry-After in seconds, as an HTTP date, or in milliseconds', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    assert.equal(retryAfterSeconds(createHttpHeaders({ 'retry-after': '3' }), now), 3);
    assert.equal(retryAfterSeconds(createHttpHeaders({ 'retry-after': 'Tue, 01 Jan 2030 00:00:05 GMT' }), now), 5);
    assert.equal(retryAfterSeconds(createHttpHeaders({ 'retry-after-ms': '1500' }), now), 1.5);
    assert.equal(retryAfterSeconds(createHttpHeaders({ 'x-ms-retry-after-ms': '250' }), now), 0.25);
    assert.equal(retryAfterSeconds(createHttpHeaders({ 'retry-after': 'soon' }), now), undefined);
    assert.equal(retryAfterSeconds(undefined, now), undefined);
  });

  it('5xx and 408 → unreachable', () => {
    for (const [status, code] of [
      [500, 'InternalServerError'],
      [502, 'BadGateway'],
      [503, 'ServiceUnavailable'],
      [504, 'GatewayTimeout'],
      [408, 'RequestTimeout'],
    ] as const) {
      const err = expectKind(serviceError(status, code, 'The service is unavailable.'), 'unreachable');
      assert.equal(err.retryable, true);
    }
  });

  it('any other status → other', () => {
    expectKind(serviceError(409, 'Conflict', 'Conflict.'), 'other');
    expectKind(serviceError(400, undefined, 'Unexpected status code: 400'), 'other');
  });
});

describe('classifyAzureError: transport', () => {
  it('no answer (REQUEST_SEND_ERROR, ECONNREFUSED, ENOTFOUND, ETIMEDOUT, ECONNRESET) → unreachable', () => {
    for (const code of ['REQUEST_SEND_ERROR', 'ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN']) {
      const err = expectKind(transportError(code, `connect ${code} 10.0.0.4:443`), 'unreachable');
      assert.match(err.message, /could not be reached while unwrapping/);
    }
    // A bare Node system error, should one escape the pipeline.
    expectKind(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED' }), 'unreachable');
  });

  it('AbortError (our timeout aborted the request) → unreachable', () => {
    const abort = new Error('The operation was aborted.');
    abort.name = 'AbortError';
    expectKind(abort, 'unreachable');
  });
});

describe('classifyAzureError: @azure/identity', () => {
  it('AuthenticationError for a bad secret or unknown client → refused', () => {
    expectKind(
      new AuthenticationError(401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.', error_codes: [7000215] }),
      'refused',
      wrapCtx,
    );
    expectKind(new AuthenticationError(400, { error: 'unauthorized_client', error_description: "AADSTS700016: Application with identifier 'x' was not found." }), 'refused');
  });

  it('AuthenticationRequiredError, AggregateAuthenticationError and CredentialUnavailableError → refused', () => {
    expectKind(new AuthenticationRequiredError({ scopes: ['https://vault.azure.net/.default'], message: 'invalid_client: Error(s): 7000215 - AADSTS7000215: Invalid client secret provided.' }), 'refused');
    expectKind(new AggregateAuthenticationError([new CredentialUnavailableError('WorkloadIdentityCredential: no token file')], 'no credential'), 'refused');
    expectKind(new CredentialUnavailableError('ManagedIdentityCredential: no managed identity endpoint found.'), 'refused');
  });

  it('an identity error that shows a network failure → unreachable, never refused', () => {
    // MSAL, when it cannot download the authority's metadata (what the driver test sees with the token endpoint down).
    expectKind(new CredentialUnavailableError('endpoints_resolution_error: See https://aka.ms/msal.js.errors#endpoints_resolution_error for details'), 'unreachable');
    expectKind(new AuthenticationError(400, { error: 'network_error', error_description: 'request to https://login.microsoftonline.com failed, reason: connect ECONNREFUSED' }), 'unreachable');
    expectKind(new AggregateAuthenticationError([new RestError('getaddrinfo ENOTFOUND login.microsoftonline.com', { code: 'REQUEST_SEND_ERROR' })]), 'unreachable');
    expectKind(new CredentialUnavailableError('ManagedIdentityCredential: IMDS request failed', { cause: Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }) }), 'unreachable');
    // The identity provider failing on its side, or throttling.
    expectKind(new AuthenticationError(503, { error: 'temporarily_unavailable', error_description: 'AADSTS90033: A transient error has occurred.' }), 'unreachable');
    expectKind(new AuthenticationError(429, { error: 'too_many_requests', error_description: 'AADSTS50196: loop detected' }), 'throttled');
  });
});

describe('classifyAzureError: the SDK’s local checks and the rest', () => {
  it("the SDK's Error for an expired, not-yet-valid or operation-restricted key → key_unusable", () => {
    const id = 'https://acme.vault.azure.net/keys/tenant-mk/0123abcd';
    expectKind(new Error(`Key ${id} expired at 2024-01-01T00:00:00.000Z`), 'key_unusable', wrapCtx);
    expectKind(new Error(`Key ${id} can't be used before 2031-01-01T00:00:00.000Z`), 'key_unusable', wrapCtx);
    expectKind(new Error(`Operation wrapKey is not supported on key ${id}`), 'key_unusable', wrapCtx);
  });

  it('a challenge for another domain → key_unusable, naming the setting that accepts it', () => {
    const err = expectKind(
      new Error("The challenge resource 'vault.azure.net' does not match the requested domain. Set disableChallengeResourceVerification to true in your client options to disable."),
      'key_unusable',
    );
    assert.match(err.message, /disableChallengeResourceVerification/);
  });

  it('a KmsError passes through; anything else → other; messages never copy provider text', () => {
    const mine = new KmsError('bad_ciphertext', 'mine');
    assert.equal(classifyAzureError(mine, unwrapCtx), mine);
    expectKind(new TypeError('x is not a function'), 'other');
    const secretish = serviceError(401, 'Unauthorized', 'token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl rejected');
    assert.ok(!classifyAzureError(secretish, unwrapCtx).message.includes('eyJ'));
  });
});
