import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KmsError } from '../../src/kms/errors.js';
import { MAX_LOGGED_MESSAGE, providerMessage, redactSecrets } from '../../src/kms/redact.js';

describe('redactSecrets', () => {
  const cases: Array<[string, string]> = [
    ['The security token included in the request is invalid: AKIAIOSFODNN7EXAMPLE', 'AKIAIOSFODNN7EXAMPLE'],
    ['header Authorization: Bearer abcdefghijklmnop1234', 'abcdefghijklmnop1234'],
    ['token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U expired', 'eyJhbGciOiJIUzI1NiJ9'],
    ['client_secret=s3cr3t-value&grant_type=client_credentials', 's3cr3t-value'],
    ['{"password": "hunter2hunter2"}', 'hunter2hunter2'],
    ['-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----', 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC'],
    ['ciphertext dGhpcyBpcyBhIGxvbmcgYmFzZTY0IHN0cmluZyB0aGF0IGxvb2tzIGxpa2Uga2V5cw== rejected', 'dGhpcyBpcyBhIGxvbmcgYmFzZTY0'],
  ];
  for (const [text, secret] of cases) {
    it(`hides ${secret.slice(0, 12)}…`, () => {
      const out = redactSecrets(text);
      assert.ok(!out.includes(secret), out);
    });
  }

  it('keeps ordinary diagnostics readable', () => {
    const text = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab is disabled.';
    assert.equal(redactSecrets(text), text);
    assert.equal(redactSecrets('connect ECONNREFUSED 127.0.0.1:4599'), 'connect ECONNREFUSED 127.0.0.1:4599');
  });

  it('bounds the length', () => {
    assert.equal(redactSecrets('x '.repeat(1000)).length, MAX_LOGGED_MESSAGE + 1);
  });

  it('providerMessage reads the cause of a KmsError', () => {
    assert.equal(providerMessage(new KmsError('refused', 'ours', { cause: new Error('theirs: password=abc123456') })), 'theirs: password=[redacted]');
    assert.equal(providerMessage(new KmsError('refused', 'ours')), undefined);
  });
});
