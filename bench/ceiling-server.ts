/**
 * The ceiling of `npm run bench`: a bare Fastify server with one POST route per scenario
 * that parses the same JSON request body and answers a JSON body of the same size and
 * shape (Keyward's own answer, recorded by the bench), with no auth, no validation, no
 * crypto, no metrics and logging off. Same Fastify major and listen setup as Keyward.
 *
 *   node --import tsx bench/ceiling-server.ts <routes.json> <port>
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';

interface RoutesFile {
  readonly bodyLimit: number;
  readonly routes: ReadonlyArray<{ readonly url: string; readonly response: unknown }>;
}

const [file, portText] = process.argv.slice(2);
if (!file || !portText) {
  process.stderr.write('usage: ceiling-server.ts <routes.json> <port>\n');
  process.exit(2);
}
const spec = JSON.parse(readFileSync(file, 'utf8')) as RoutesFile;
const app = Fastify({ logger: false, bodyLimit: spec.bodyLimit, routerOptions: { ignoreDuplicateSlashes: true } });
for (const route of spec.routes) {
  const response = route.response;
  app.post(route.url, async () => response);
}
app.get('/ready', async () => ({ status: 'ready' }));
await app.listen({ host: '127.0.0.1', port: Number(portText) });
const stop = (): void => {
  void app.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
