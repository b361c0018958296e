// Runs inside `unshare --net`: a private network namespace whose only interface is its own
// loopback, so a process that can only listen on all interfaces (an emulator), or a service
// that should be reachable only on its published ports (the compose wiring), is reachable from
// nowhere else. Brings loopback up, relays one Unix socket per port (shared through the file
// system, named <port>.sock) to 127.0.0.1:<port> inside the namespace, and runs the command in
// the foreground, passing SIGTERM and SIGINT on to it and exiting with its code.
// Usage: node netns-launch.mjs <socket dir> <port,port,...> <command> [args...]
import { spawn, spawnSync } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const [socketDir, portList, command, ...args] = process.argv.slice(2);
const up = spawnSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'inherit' });
if (up.status !== 0) process.exit(70);

const relays = portList.split(',').map((port) => {
  const path = join(socketDir, `${port}.sock`);
  rmSync(path, { force: true });
  const relay = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: Number(port) });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  relay.listen(path);
  return relay;
});

const child = spawn(command, args, { stdio: 'inherit' });
child.on('exit', (code, signal) => {
  for (const relay of relays) relay.close();
  process.exit(code ?? (signal ? 1 : 0));
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
