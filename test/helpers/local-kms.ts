/**
 * nsmithuk/local-kms (installed by scripts/provision/local-kms.sh) for one test file:
 * a fresh data directory, keys and aliases seeded from YAML, a free port on 127.0.0.1,
 * and an admin client to disable, enable or schedule deletion of keys as a tenant would.
 *
 * local-kms has no authentication at all: any static credentials are accepted, so it can
 * show key states (disabled, pending deletion, unknown) but never a refused credential.
 * It can only listen on all interfaces (its address is hard-coded as ":PORT"), so it runs
 * in a private network namespace (`isolateNetwork`): reachable only through 127.0.0.1 here.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DisableKeyCommand,
  EnableKeyCommand,
  KMSClient,
  ListKeysCommand,
  ScheduleKeyDeletionCommand,
  CancelKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { emulatorFile, startEmulator, type Emulator } from './emulator.js';

export const LOCAL_KMS_REGION = 'eu-west-2';
export const LOCAL_KMS_ACCOUNT = '111122223333';
/** Any value works with local-kms; real-looking shapes keep the SDK's own checks happy. */
export const TEST_ACCESS_KEY_ID = 'AKIAKEYWARDTEST00001';
export const TEST_SECRET_ACCESS_KEY = 'keyward-test-secret-access-key-0000000001';

export interface SeedKey {
  /** Name used by the test; the key gets a random UUID id. */
  readonly name: string;
  /** Alias name without the `alias/` prefix. */
  readonly alias?: string;
}

export interface LocalKmsKey {
  readonly id: string;
  readonly arn: string;
  readonly alias: string | undefined;
  readonly aliasArn: string | undefined;
}

export interface LocalKms {
  readonly emulator: Emulator;
  readonly endpoint: string;
  readonly keys: Readonly<Record<string, LocalKmsKey>>;
  /** A client for what a tenant does to its own key (disable, enable, schedule deletion). */
  readonly admin: KMSClient;
  disable(name: string): Promise<void>;
  enable(name: string): Promise<void>;
  scheduleDeletion(name: string): Promise<void>;
  cancelDeletion(name: string): Promise<void>;
  close(): Promise<void>;
}

/** An ARN of a key in the emulator's account and region that does not exist. */
export function unknownKeyArn(): string {
  return `arn:aws:kms:${LOCAL_KMS_REGION}:${LOCAL_KMS_ACCOUNT}:key/${randomUUID()}`;
}

export async function startLocalKms(seed: readonly SeedKey[]): Promise<LocalKms> {
  const binary = await emulatorFile('local-kms', 'local-kms');
  const dir = await mkdtemp(join(tmpdir(), 'keyward-local-kms-'));
  const keys: Record<string, LocalKmsKey> = {};
  for (const key of seed) {
    const id = randomUUID();
    keys[key.name] = {
      id,
      arn: `arn:aws:kms:${LOCAL_KMS_REGION}:${LOCAL_KMS_ACCOUNT}:key/${id}`,
      alias: key.alias === undefined ? undefined : `alias/${key.alias}`,
      aliasArn: key.alias === undefined ? undefined : `arn:aws:kms:${LOCAL_KMS_REGION}:${LOCAL_KMS_ACCOUNT}:alias/${key.alias}`,
    };
  }
  const yaml = [
    'Keys:',
    '  Symmetric:',
    '    Aes:',
    ...Object.values(keys).flatMap((k) => [`      - Metadata:`, `          KeyId: ${k.id}`, `        BackingKeys:`, `          - ${randomBytes(32).toString('hex')}`]),
    'Aliases:',
    ...Object.values(keys)
      .filter((k) => k.alias !== undefined)
      .flatMap((k) => [`  - AliasName: ${k.alias}`, `    TargetKeyId: ${k.id}`]),
    '',
  ].join('\n');
  const seedPath = join(dir, 'seed.yaml');
  await writeFile(seedPath, yaml);

  let admin: KMSClient | undefined;
  const emulator = await startEmulator({
    name: 'local-kms',
    command: binary,
    args: () => [],
    env: (port) => ({
      PORT: String(port),
      KMS_REGION: LOCAL_KMS_REGION,
      KMS_ACCOUNT_ID: LOCAL_KMS_ACCOUNT,
      KMS_SEED_PATH: seedPath,
      // Persistence, so a killed and restarted emulator (an outage) still has its keys.
      KMS_DATA_PATH: join(dir, 'data'),
    }),
    ready: (port) => localKmsAnswers(port),
    startTimeoutMs: 20_000,
    isolateNetwork: true,
  });
  const endpoint = `http://127.0.0.1:${emulator.port}`;
  admin = adminClient(endpoint);
  const client = admin;
  const idOf = (name: string): string => {
    const key = keys[name];
    if (!key) throw new Error(`no seeded key named ${name}`);
    return key.id;
  };
  return {
    emulator,
    endpoint,
    keys,
    admin: client,
    async disable(name) {
      await client.send(new DisableKeyCommand({ KeyId: idOf(name) }));
    },
    async enable(name) {
      await client.send(new EnableKeyCommand({ KeyId: idOf(name) }));
    },
    async scheduleDeletion(name) {
      await client.send(new ScheduleKeyDeletionCommand({ KeyId: idOf(name), PendingWindowInDays: 7 }));
    },
    async cancelDeletion(name) {
      await client.send(new CancelKeyDeletionCommand({ KeyId: idOf(name) }));
    },
    async close() {
      admin?.destroy();
      admin = undefined;
      await emulator.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves once a local-kms on this loopback port answers ListKeys (the readiness probe of its starters). */
export async function localKmsAnswers(port: number, region = LOCAL_KMS_REGION): Promise<void> {
  const probe = adminClient(`http://127.0.0.1:${port}`, region);
  try {
    await probe.send(new ListKeysCommand({}));
  } finally {
    probe.destroy();
  }
}

function adminClient(endpoint: string, region = LOCAL_KMS_REGION): KMSClient {
  return new KMSClient({
    region,
    endpoint,
    credentials: { accessKeyId: TEST_ACCESS_KEY_ID, secretAccessKey: TEST_SECRET_ACCESS_KEY },
    maxAttempts: 1,
  });
}
