/**
 * Serves Keyward's Azure Key Vault, Microsoft Entra token and Google Cloud KMS STAND-INS on fixed
 * ports, for docker-compose.yml (the `standins` service, built from the Dockerfile's `standins`
 * target) and for trying Keyward by hand:
 *
 *   npx tsx scripts/standins/serve.ts
 *
 * Stand-ins, not emulators and not the real services: small servers written for Keyward's tests
 * that speak the documented protocols as Keyward reads them (docs/kms/azure.md, docs/kms/gcp.md,
 * scripts/standins/standins.ts). Keys live in memory and are new at every start.
 *
 * Environment (all optional):
 *   STANDINS_HOST                 address to listen on; default 127.0.0.1 (the image sets 0.0.0.0)
 *   STANDINS_PUBLIC_HOST          host name clients use, for the URLs printed (default: see standins.ts)
 *   STANDINS_AZURE_VAULT_PORT     Key Vault stand-in (HTTPS), default 8443
 *   STANDINS_AZURE_TOKEN_PORT     Entra token stand-in (HTTPS), default 8444
 *   STANDINS_GCP_PORT             Cloud KMS stand-in (plaintext gRPC), default 8090
 *   STANDINS_TLS_NAMES            comma-separated names the certificate must cover; default 127.0.0.1,localhost
 *   AZURE_STANDIN_CLIENT_SECRET   the client secret the token stand-in accepts (default in standins.ts)
 *   KEYWARD_TEST_CACHE            where the TLS material is (azure-standin/), as for the tests;
 *                                 default ~/.cache/keyward-test
 *
 * Prints how to reach each stand-in, then one JSON line `{"msg":"stand-ins ready",…}` with the
 * same facts, on standard output. Stops on SIGTERM or SIGINT (it may run as PID 1).
 */
import { startStandins, type StandinsInfo } from './standins.js';

function fail(message: string): never {
  process.stderr.write(`standins: ${message}\n`);
  process.exit(2);
}

function port(name: string): number | undefined {
  const raw = process.env[name]?.trim();
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) fail(`${name} must be a port number from 1 to 65535 (got "${raw}")`);
  return Number(raw);
}

function describe(info: StandinsInfo): string {
  return [
    'Keyward stand-ins: test stand-ins written for Keyward, NOT the real Azure or Google services and NOT emulators.',
    `  Azure Key Vault stand-in   ${info.azure.vaultUrl}  key '${info.azure.keyName}' (RSA 2048, RSA-OAEP-256), version ${info.azure.keyVersion}`,
    `  Entra ID token stand-in    ${info.azure.authorityHost}  tenant ${info.azure.tenantId}, client '${info.azure.clientId}', secret from AZURE_STANDIN_CLIENT_SECRET`,
    `  Cloud KMS stand-in (gRPC, plaintext)  ${info.gcp.endpoint}  key ${info.gcp.keyName}`,
    `  TLS (Azure): certificate for ${info.tls.names.join(', ')} from the test CA ${info.tls.caFile}; clients trust it with NODE_EXTRA_CA_CERTS`,
    `  listening on ${info.listen.host} ports ${info.listen.azureVault}, ${info.listen.azureToken}, ${info.listen.gcp}`,
    '  Keys live in memory: after a restart, EDEKs made under the previous keys no longer unwrap.',
    '  Tenants using them: deploy/compose/tenants.yaml (tenant-azure, tenant-gcp).',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const tlsNames = process.env.STANDINS_TLS_NAMES?.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const running = await startStandins({
    host: process.env.STANDINS_HOST?.trim() || undefined,
    publicHost: process.env.STANDINS_PUBLIC_HOST?.trim() || undefined,
    ports: { azureVault: port('STANDINS_AZURE_VAULT_PORT'), azureToken: port('STANDINS_AZURE_TOKEN_PORT'), gcp: port('STANDINS_GCP_PORT') },
    tlsNames,
    azureClientSecret: process.env.AZURE_STANDIN_CLIENT_SECRET || undefined,
    log: (line) => process.stdout.write(`standins: ${line}\n`),
  });
  process.stdout.write(describe(running.info));
  process.stdout.write(`${JSON.stringify({ msg: 'stand-ins ready', ...running.info })}\n`);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`standins: ${signal}: stopping\n`);
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`standins: error while stopping: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)));
