// The real stack for the JavaScript tests: nats-server (JetStream), a
// PostgreSQL of its own (migrations and demo data applied), auth, ws-edge and,
// when asked, analytics-aggregator — every one a child process with its own
// temp dir and free loopback ports, the way tests/support/rt_testenv.c does it
// for the C tests. Everything is killed by stop() and, as a last resort, when
// this process exits.
//
//   const stack = await startStack({ aggregator: true });
//   stack.wsUrl, stack.token('demo-student-1'), await stack.restartEdge(), await stack.stop()
//
// Binaries: $RT_BIN_DIR (ctest sets it to <build>/bin), else build/bin.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, chownSync, rmSync, openSync, readFileSync, readdirSync, existsSync, closeSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintToken } from './token.mjs';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN_DIR = process.env.RT_BIN_DIR || join(REPO, 'build/bin');
export const SECRET = 'js-test-secret-with-at-least-32-characters';

const live = new Set();
function killAll() {
  for (const p of live) {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function waitFor(what, fn, timeoutMs, proc) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`${what}: process exited (${proc.exitCode}); log ${proc.logPath}\n${tail(proc.logPath)}`);
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`${what}: not ready within ${timeoutMs} ms${last ? ': ' + last.message : ''}${proc ? '\n' + tail(proc.logPath) : ''}`);
}

function tail(path, lines = 30) {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function tcpAnswers(port) {
  return new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    s.setTimeout(1000);
    s.once('data', (d) => {
      s.destroy();
      res(d.toString().startsWith('INFO '));
    });
    s.once('error', () => res(false));
    s.once('timeout', () => {
      s.destroy();
      res(false);
    });
  });
}

export async function httpOk(url) {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return r.status === 200;
  } catch {
    return false;
  }
}

function startProc(name, cmd, args, { env = {}, dir, uid, gid } = {}) {
  const logPath = join(dir, name + '.log');
  const fd = openSync(logPath, 'a');
  const p = spawn(cmd, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
    detached: true, // own process group: stop() kills it whole
    uid,
    gid,
  });
  closeSync(fd);
  p.logPath = logPath;
  p.name = name;
  live.add(p);
  p.exited = new Promise((res) => p.once('exit', (code, signal) => {
    live.delete(p);
    res({ code, signal });
  }));
  return p;
}

async function stopProc(p, signal = 'SIGTERM', graceMs = 10000) {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, signal);
  } catch {
    return;
  }
  const t = setTimeout(() => {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await p.exited;
  clearTimeout(t);
}

function pgBinDir() {
  if (process.env.RT_PG_BINDIR) return process.env.RT_PG_BINDIR;
  const versions = readdirSync('/usr/lib/postgresql').filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/postgres`));
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error('no PostgreSQL server (apt-get install postgresql)');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

/**
 * Starts the stack. Options:
 *   aggregator: also start analytics-aggregator (default false)
 *   notifications: also start notification-dispatcher, when built (default false)
 *   edgeEnv: extra environment of ws-edge (e.g. {WS_STATIC_DIR})
 *   authEnv: extra environment of auth
 *   origins: WS_ALLOWED_ORIGINS (default "*")
 */
export async function startStack(opts = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rt-js-'));
  chmodSync(dir, 0o755); // PostgreSQL runs as "postgres" when we are root
  const stack = Object.assign(Object.create(stackMethods), { dir, procs: {}, secret: SECRET });
  try {
    // --- nats-server with JetStream
    stack.natsPort = await freePort();
    const natsConf = join(dir, 'nats.conf');
    writeFileSync(natsConf, `listen: 127.0.0.1:${stack.natsPort}\njetstream { store_dir: "${dir}/jetstream" }\n`);
    stack.natsUrl = `nats://127.0.0.1:${stack.natsPort}`;
    stack.procs.nats = startProc('nats', 'nats-server', ['-c', natsConf], { dir });
    await waitFor('nats-server', () => tcpAnswers(stack.natsPort), 15000, stack.procs.nats);

    // --- PostgreSQL
    const pgBin = pgBinDir();
    const pgDir = join(dir, 'pg');
    const pgSock = join(dir, 'pgsock');
    mkdirSync(pgDir, { mode: 0o700 });
    mkdirSync(pgSock);
    let uid, gid;
    if (process.getuid && process.getuid() === 0) {
      uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      chownSync(pgDir, uid, gid);
      chownSync(pgSock, uid, gid);
    }
    execFileSync(`${pgBin}/initdb`, ['-D', pgDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'], {
      uid,
      gid,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    stack.pgPort = await freePort();
    stack.procs.pg = startProc(
      'postgres',
      `${pgBin}/postgres`,
      ['-D', pgDir, '-p', String(stack.pgPort), '-k', pgSock, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'shared_buffers=32MB'],
      { dir: pgSock, uid, gid },
    );
    const psql = (args, input) =>
      execFileSync('psql', ['-h', '127.0.0.1', '-p', String(stack.pgPort), '-v', 'ON_ERROR_STOP=1', '-q', ...args], { input, stdio: ['pipe', 'pipe', 'pipe'] });
    await waitFor('postgres', () => {
      psql(['-U', 'postgres', '-d', 'postgres', '-c', 'SELECT 1']);
      return true;
    }, 30000, stack.procs.pg);
    psql(['-U', 'postgres', '-d', 'postgres'], 'CREATE ROLE unpuzzle LOGIN;\nCREATE DATABASE unpuzzle OWNER unpuzzle;\n');
    stack.databaseUrl = `postgresql://unpuzzle@127.0.0.1:${stack.pgPort}/unpuzzle`;
    execFileSync(join(REPO, 'scripts/migrate.sh'), { env: { ...process.env, DATABASE_URL: stack.databaseUrl }, stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync('psql', [stack.databaseUrl, '-q', '-v', 'ON_ERROR_STOP=1', '-f', join(REPO, 'deploy/demo/demo_data.sql')], { stdio: ['ignore', 'ignore', 'pipe'] });

    // --- auth
    stack.authAdminPort = await freePort();
    stack.procs.auth = startProc('auth', join(BIN_DIR, 'auth'), [], {
      dir,
      env: {
        NATS_URL: stack.natsUrl,
        DATABASE_URL: stack.databaseUrl,
        SUPABASE_JWT_SECRET: SECRET,
        ADMIN_PORT: String(stack.authAdminPort),
        JWT_LEEWAY_S: '0',
        LOG_LEVEL: 'warn',
        ...(opts.authEnv || {}),
      },
    });
    await waitFor('auth', () => httpOk(`http://127.0.0.1:${stack.authAdminPort}/readyz`), 30000, stack.procs.auth);

    // --- ws-edge (restartable on the same port)
    stack.wsPort = await freePort();
    stack.wsUrl = `ws://127.0.0.1:${stack.wsPort}/ws`;
    stack.httpUrl = `http://127.0.0.1:${stack.wsPort}`;
    stack.edgeEnv = {
      NATS_URL: stack.natsUrl,
      WS_PORT: String(stack.wsPort),
      WS_BIND: '127.0.0.1',
      EDGE_ID: 'js-edge',
      WS_ALLOWED_ORIGINS: opts.origins || '*',
      WS_THREADS: '1',
      WS_DRAIN_MS: '1000',
      PRESENCE_INTERVAL_MS: '2000',
      LOG_LEVEL: 'info',
      ...(opts.edgeEnv || {}),
    };
    await stack.startEdge();
    // --- analytics-aggregator
    if (opts.aggregator) {
      stack.aggAdminPort = await freePort();
      stack.procs.agg = startProc('analytics', join(BIN_DIR, 'analytics-aggregator'), [], {
        dir,
        env: {
          NATS_URL: stack.natsUrl,
          DATABASE_URL: stack.databaseUrl,
          ADMIN_PORT: String(stack.aggAdminPort),
          ANALYTICS_REPLICA_ID: 'js-analytics',
          ANALYTICS_PUBLISH_INTERVAL_MS: '300',
          LOG_LEVEL: 'warn',
        },
      });
    }
    // --- notification-dispatcher (when this build has it)
    if (opts.notifications && existsSync(join(BIN_DIR, 'notification-dispatcher'))) {
      stack.notifyAdminPort = await freePort();
      stack.procs.notify = startProc('notification-dispatcher', join(BIN_DIR, 'notification-dispatcher'), [], {
        dir,
        env: { NATS_URL: stack.natsUrl, DATABASE_URL: stack.databaseUrl, ADMIN_PORT: String(stack.notifyAdminPort), LOG_LEVEL: 'warn' },
      });
      await waitFor('notification-dispatcher', () => httpOk(`http://127.0.0.1:${stack.notifyAdminPort}/readyz`), 30000, stack.procs.notify);
    }
  } catch (err) {
    await stopStack(stack);
    throw err;
  }
  return stack;
}

async function startEdge(stack) {
  stack.procs.edge = startProc('ws-edge', join(BIN_DIR, 'ws-edge'), [], { dir: stack.dir, env: stack.edgeEnv });
  await waitFor('ws-edge', () => httpOk(`${stack.httpUrl}/readyz`), 30000, stack.procs.edge);
}

async function stopStack(stack) {
  const order = ['agg', 'notify', 'edge', 'auth', 'pg', 'nats'];
  for (const name of order) {
    const p = stack.procs[name];
    if (p) await stopProc(p, name === 'pg' ? 'SIGQUIT' : 'SIGTERM', 5000);
  }
  if (process.env.RT_TEST_KEEP === '1') console.error('kept', stack.dir);
  else rmSync(stack.dir, { recursive: true, force: true });
}

// Methods, attached after start so that startStack can call startEdge.
const stackMethods = {
  /** HS256 token for `sub` signed with the stack's secret (ttlS default 3600). */
  token(sub, { ttlS = 3600, role } = {}) {
    return mintToken(this.secret, sub, { ttlS, role });
  },
  async startEdge() {
    await startEdge(this);
  },
  /** SIGKILL ws-edge (a crash): clients see their socket die (1006). */
  async killEdge() {
    await stopProc(this.procs.edge, 'SIGKILL');
  },
  /** SIGTERM ws-edge (drain: clients get 1012) and wait for it to exit. */
  async drainEdge() {
    await stopProc(this.procs.edge, 'SIGTERM', 15000);
  },
  async restartEdge({ kill = true } = {}) {
    if (kill) await this.killEdge();
    else await this.drainEdge();
    await this.startEdge();
  },
  async waitAggregator() {
    await waitFor('analytics-aggregator', () => httpOk(`http://127.0.0.1:${this.aggAdminPort}/readyz`), 30000, this.procs.agg);
  },
  async stop() {
    await stopStack(this);
  },
};

