/**
 * One tenant across two clouds: AWS KMS (local-kms, an independent emulator) and Google
 * Cloud KMS (the Cloud KMS stand-in: no independent emulator is installable here, see
 * docs/kms/gcp.md). EDEKs of both unwrap, new wraps follow the primary, rewrap moves
 * EDEKs between providers in both directions, and a two-provider EDEK survives one
 * provider's outage.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { KeyManagementServiceClient } from '@google-cloud/kms';
import { edekFromBase64, edekToBase64 } from '../../src/envelope/edek.js';
import { META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { createStandInKey, standInAdminClient, startGcpKmsStandIn, type GcpKmsStandIn } from '../helpers/gcp-kms-standin.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../helpers/local-kms.js';

const RING = 'projects/keyward-multi/locations/europe-west1/keyRings/tenants';

describe('a tenant on AWS KMS and Google Cloud KMS at once', () => {
  let aws: LocalKms;
  let awsProxy: FaultProxy;
  let gcp: GcpKmsStandIn;
  let gcpAdmin: KeyManagementServiceClient;
  let gcpKey: string;
  let app: TestApp;

  /** The tenants file with `multi` having the given primary; `aws-only` and `gcp-only` beside it. */
  const tenants = (primary: 'aws' | 'gcp'): string => {
    const awsConfig = (id: number, status: string) =>
      `      - { id: ${id}, status: ${status}, provider: aws, timeout: 1s, retries: 1, aws: { region: ${LOCAL_KMS_REGION}, keyId: ${aws.keys.shared!.arn}, endpoint: 'http://127.0.0.1:${awsProxy.port}', credentials: { type: static, accessKeyId: { env: AWS_ID }, secretAccessKey: { env: AWS_SECRET } } } }`;
    const gcpConfig = (id: number, status: string) =>
      `      - { id: ${id}, status: ${status}, provider: gcp, timeout: 1s, retries: 1, gcp: { keyName: ${gcpKey}, endpoint: '${gcp.endpoint}', tls: false } }`;
    return `version: 1
tenants:
  multi:
    kmsConfigs:
${awsConfig(1, primary === 'aws' ? 'primary' : 'active')}
${gcpConfig(2, primary === 'gcp' ? 'primary' : 'active')}
  aws-only:
    kmsConfigs:
${awsConfig(3, 'primary')}
  gcp-only:
    kmsConfigs:
${gcpConfig(4, 'primary')}
`;
  };

  before(async () => {
    aws = await startLocalKms([{ name: 'shared' }]);
    awsProxy = await startFaultProxy(aws.emulator.port);
    gcp = await startGcpKmsStandIn();
    gcpAdmin = standInAdminClient(gcp);
    gcpKey = await createStandInKey(gcpAdmin, `${RING}/cryptoKeys/multi`);
    app = await startTestApp({ tenants: tenants('gcp'), env: { AWS_ID: TEST_ACCESS_KEY_ID, AWS_SECRET: TEST_SECRET_ACCESS_KEY } });
  });
  after(async () => {
    await app.close();
    await awsProxy.close();
    await aws.close();
    await gcpAdmin.close();
    await gcp.close();
  });

  const awsRetries = async (): Promise<number> => {
    const text = (await app.ops.inject('/metrics')).body;
    const match = /keyward_kms_retries_total\{provider="aws",operation="unwrap",reason="unreachable"\} (\d+)/.exec(text);
    return Number(match?.[1] ?? 0);
  };
  const configOf = (edek: string): number => edekFromBase64(edek)[0]!.kmsConfigId;
  const generate = async (tenantId: string) => (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
  const unwrap = (tenantId: string, edek: string) => post(app, '/v1/keys/unwrap', { tenantId, edek, metadata: META });
  const rewrap = async (tenantId: string, edek: string, newTenantId?: string) => {
    const res = await post(app, '/v1/keys/rewrap', { tenantId, edek, newTenantId, metadata: META });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<{ edek: string }>().edek;
  };

  it('unwraps EDEKs of both providers, wraps with the primary, and rewraps GCP → AWS → GCP', async () => {
    // While GCP is primary.
    const underGcp = await generate('multi');
    assert.equal(configOf(underGcp.edek), 2);

    // AWS becomes primary; GCP stays active.
    await app.rewrite(tenants('aws'));
    const underAws = await generate('multi');
    assert.equal(configOf(underAws.edek), 1, 'new wraps use the primary (AWS)');
    assert.deepEqual((await unwrap('multi', underGcp.edek)).json(), { dek: underGcp.dek }, 'the active GCP config still unwraps');
    assert.deepEqual((await unwrap('multi', underAws.edek)).json(), { dek: underAws.dek });

    // Rewrap moves the GCP EDEK onto the primary, AWS.
    const movedToAws = await rewrap('multi', underGcp.edek);
    assert.equal(configOf(movedToAws), 1);
    assert.deepEqual((await unwrap('multi', movedToAws)).json(), { dek: underGcp.dek });

    // GCP primary again: rewrap moves the AWS EDEK to GCP.
    await app.rewrite(tenants('gcp'));
    const movedToGcp = await rewrap('multi', underAws.edek);
    assert.equal(configOf(movedToGcp), 2);
    assert.deepEqual((await unwrap('multi', movedToGcp)).json(), { dek: underAws.dek });
  });

  it('rewraps from one tenant on AWS to another tenant on GCP, and back', async () => {
    const original = await generate('aws-only');
    const onGcp = await rewrap('aws-only', original.edek, 'gcp-only');
    assert.equal(configOf(onGcp), 4);
    assert.deepEqual((await unwrap('gcp-only', onGcp)).json(), { dek: original.dek });
    const backOnAws = await rewrap('gcp-only', onGcp, 'aws-only');
    assert.equal(configOf(backOnAws), 3);
    assert.deepEqual((await unwrap('aws-only', backOnAws)).json(), { dek: original.dek });
    const wrong = await unwrap('aws-only', onGcp);
    assert.equal(wrong.json<ErrorJson>().code, 203, "the GCP tenant's EDEK is not the AWS tenant's");
  });

  it('an EDEK holding the DEK under both providers unwraps while AWS is down', async () => {
    const dek = randomBytes(32).toString('base64');
    await app.rewrite(tenants('aws'));
    const viaAws = (await post(app, '/v1/keys/wrap', { tenantId: 'multi', dek, metadata: META })).json<{ edek: string }>().edek;
    await app.rewrite(tenants('gcp'));
    const viaGcp = (await post(app, '/v1/keys/wrap', { tenantId: 'multi', dek, metadata: META })).json<{ edek: string }>().edek;
    const both = edekToBase64([...edekFromBase64(viaAws), ...edekFromBase64(viaGcp)]);

    // AWS primary, so its entry is tried first, fails, and the GCP entry serves.
    await app.rewrite(tenants('aws'));
    const retriesBefore = await awsRetries();
    await awsProxy.setMode('refuse');
    try {
      const res = await unwrap('multi', both);
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), { dek });
      assert.ok((await awsRetries()) > retriesBefore, 'the AWS entry was really tried (and retried) first');
      const awsOnly = await unwrap('multi', viaAws);
      assert.equal(awsOnly.statusCode, 503);
      assert.equal(awsOnly.json<ErrorJson>().code, 208);
      assert.equal((await generate('gcp-only')).edek.length > 0, true, 'the GCP tenant is unaffected');
    } finally {
      await awsProxy.setMode('pass');
    }
    assert.deepEqual((await unwrap('multi', viaAws)).json(), { dek }, 'AWS serves again once it is back');
  });
});
