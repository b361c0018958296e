// Runs inside `unshare --net`: a private network namespace whose only interface is its
// own loopback, so an emulator that can only listen on all interfaces is still reachable
// from nowhere else. Brings loopback up, relays a Unix socket (shared through the file
// system) to 127.0.0.1:<port> inside the namespace, and runs the emulator in the
// foreground. Usage: node netns-launch.mjs <socket> <port> <command> [args...]
import { spawn, spawnSync } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { rmSync } from 'node:fs';

const [socketPath, port, command, ...args] = process.argv.slice(2);
const up = spawnSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'inherit' });
if (up.status !== 0) process.exit(70);

rmSync(socketPath, { force: true });
const relay = createServer((client) => {
  const upstream = connect({ host: '127.0.0.1', port: Number(port) });
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.pipe(upstream);
  upstream.pipe(client);
});
relay.listen(socketPath);

const child = spawn(command, args, { stdio: 'inherit' });
child.on('exit', (code, signal) => {
  relay.close();
  process.exit(code ?? (signal ? 1 : 0));
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
