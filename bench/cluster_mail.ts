/**
 * Mailbox delivery end to end in a cluster (PROTOCOL.md 9, 11.4, 11.6; the
 * `cluster` section): `!msg B ...` typed at A to the `mail` event on B's
 * screen, B streaming its mail (fetch a bundle, seal, store, wake, push,
 * open, show, seen synced), one mail at a time, real clients
 * ({@link ChatClient}, their vaults in a temporary key directory) over
 * loopback TCP in this process, so one clock times them:
 *
 * - one `ImServer` with its SQLite store, A and B on it (the single
 *   process's figure, beside the others in the same run);
 * - two {@link ClusterNode}s on one `nats-server` (replicas 1), A on node
 *   1 and B on node 2: the mail crosses JetStream and its wake-up NATS;
 * - the same on a NATS cluster of three `nats-server` processes with
 *   `--cluster-replicas 3` (each publish acknowledged once two of three
 *   stored it).
 *
 * @example
 * ```ts ignore
 * import { benchClusterMail } from "./cluster_mail.ts";
 * await benchClusterMail(report, true, keys, [nats.url]);
 * ```
 * @module
 */

import { join } from "node:path";
import { Signal, sleep } from "../lib/util/mod.ts";
import { ChatClient, type UiEvent } from "../lib/client/mod.ts";
import { openMailVault } from "../lib/keystore/mod.ts";
import { ImServer, type Prekeys, SqliteMail } from "../lib/server/mod.ts";
import { ClusterNode } from "../lib/server/nats/mod.ts";
import { startNatsCluster } from "../tests/_nats.ts";
import { percentile, type Report } from "./_stats.ts";
import type { BenchKeys } from "./_fixtures.ts";

const SECTION = "cluster";

/** B's screen: the mails shown, with when. */
class Mails {
  readonly shown: number[] = [];
  readonly errors: string[] = [];
  readonly changed = new Signal();
  print(ev: UiEvent): void {
    if (ev.kind === "mail" && ev.direction === "in") {
      this.shown.push(performance.now());
    } else if (ev.kind === "error") this.errors.push(ev.text);
    this.changed.notify();
  }
  setPeer(): void {}
  async until(n: number, what: string): Promise<void> {
    const deadline = performance.now() + 60_000;
    while (this.shown.length < n) {
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `bench cluster: ${what} did not happen; errors: ${
            this.errors.slice(-3).join("; ")
          }`,
        );
      }
      await this.changed.wait(Math.min(left, 200));
    }
  }
}

/** Where A and B log in, and how it ends. */
interface Setup {
  portA: number;
  portB: number;
  prekeys: Prekeys;
  close(): Promise<void>;
}

/**
 * The mailbox delivery figures of the `cluster` section.
 * @param report where figures go
 * @param quick fewer mails
 * @param keys the bench's keys
 * @param natsUrl the section's `nats-server` (replicas 1)
 */
export async function benchClusterMail(
  report: Report,
  quick: boolean,
  keys: BenchKeys,
  natsUrl: string,
): Promise<void> {
  const n = quick ? 40 : 200;
  const clients = new Map([["A", keys.userPublic], ["B", keys.userPublic]]);
  const server = {
    identity: keys.server,
    clients,
    hostname: "127.0.0.1",
    port: 0,
    // The bench sends faster than a person: no rate limit in the way.
    mailRate: 1_000_000,
  };
  const dir = await Deno.makeTempDir({ prefix: "im-bench-cluster-mail-" });
  /** Two nodes of a cluster named `cluster` on `servers`. */
  const twoNodes = async (
    servers: string[],
    cluster: string,
    replicas: number,
  ): Promise<Setup> => {
    const clusterKey = crypto.getRandomValues(new Uint8Array(32));
    const made: Array<{ node: ClusterNode; server: ImServer }> = [];
    try {
      for (const name of ["m1", "m2"]) {
        const node = await ClusterNode.join({
          servers,
          node: name,
          clusterKey: clusterKey.slice(),
          cluster,
          replicas,
        });
        const s = await ImServer.start({ ...server, ...node.serverOptions() })
          .catch(async (e) => {
            await node.close();
            throw e;
          });
        node.attach(s);
        made.push({ node, server: s });
      }
    } catch (e) {
      for (const m of made) {
        await m.server.close();
        await m.node.close();
      }
      throw e;
    }
    return {
      portA: made[0]!.server.port,
      portB: made[1]!.server.port,
      prekeys: made[0]!.node.prekeys,
      async close() {
        for (const m of made) {
          await m.server.close().catch(() => {});
          await m.node.close().catch(() => {});
        }
      },
    };
  };
  try {
    const runs: Array<[string, string, () => Promise<Setup>]> = [
      ["SQLite, one node", "one im serve with its SQLite store", async () => {
        const mail = await SqliteMail.open(join(dir, "data", "mail.db"));
        const s = await ImServer.start({
          ...server,
          store: mail.store,
          prekeys: mail.prekeys,
        });
        return {
          portA: s.port,
          portB: s.port,
          prekeys: mail.prekeys,
          async close() {
            await s.close();
            await mail.close();
          },
        };
      }],
      [
        "JetStream across nodes",
        "A on node 1, B on node 2, one nats-server on loopback, replicas 1",
        () => twoNodes([natsUrl], "mail1", 1),
      ],
    ];
    for (const [name, note, setup] of runs) {
      const lat = await deliver(keys, dir, name, await setup(), n);
      addFigures(report, name, lat, `${n} mails of 100 chars: ${note}`);
    }
    // Three NATS processes, replicas 3.
    const nats = await startNatsCluster(3);
    try {
      const lat = await deliver(
        keys,
        dir,
        "replicas 3",
        await withRetry(() => twoNodes(nats.urls, "mail3", 3)),
        n,
      );
      addFigures(
        report,
        "JetStream across nodes, replicas 3",
        lat,
        `${n} mails of 100 chars: A on node 1, B on node 2, a NATS cluster of three nats-server processes on loopback, --cluster-replicas 3`,
      );
    } finally {
      await nats.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function addFigures(
  report: Report,
  name: string,
  lat: number[],
  note: string,
): void {
  report.add(
    SECTION,
    `mailbox delivery end to end, ${name} p50`,
    percentile(lat, 50),
    "ms",
    {
      note:
        `${note}; \`!msg B\` typed at A to the mail on B's screen (B streaming), one at a time`,
    },
  );
  report.add(
    SECTION,
    `mailbox delivery end to end, ${name} p99`,
    percentile(lat, 99),
    "ms",
  );
}

/** JetStream elects its meta leader a moment after the processes greet. */
async function withRetry<T>(f: () => Promise<T>): Promise<T> {
  const deadline = performance.now() + 20_000;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (performance.now() > deadline) throw e;
      await sleep(200);
    }
  }
}

/** A and B log in (A where `setup` says, B streaming), a warm-up, then `n` mails timed. */
async function deliver(
  keys: BenchKeys,
  dir: string,
  name: string,
  setup: Setup,
  n: number,
): Promise<number[]> {
  const keyDir = join(dir, `keys-${crypto.randomUUID()}`);
  await Deno.mkdir(keyDir, { mode: 0o700 });
  await Deno.chmod(keyDir, 0o700);
  const started: ChatClient[] = [];
  const start = async (user: string, port: number, ui: Mails) => {
    const c = await ChatClient.start({
      user,
      identity: keys.user,
      pinnedServer: keys.serverPinned,
      serverHost: "127.0.0.1",
      serverPort: port,
      ui,
      mailVault: await openMailVault(keyDir, user),
      reconnect: false,
    });
    started.push(c);
    return c;
  };
  try {
    const aUi = new Mails(), bUi = new Mails();
    const a = await start("A", setup.portA, aUi);
    await start("B", setup.portB, bUi);
    const deadline = performance.now() + 30_000;
    for (const u of ["A", "B"]) {
      while (!(await setup.prekeys.certs(u))) {
        if (performance.now() > deadline) {
          throw new Error(`bench cluster: ${u} did not publish (${name})`);
        }
        await sleep(10);
      }
    }
    await a.handleLine("!msg B warm-up");
    await bUi.until(1, `the warm-up mail (${name}; A: ${aUi.errors})`);
    const lat: number[] = [];
    for (let i = 0; i < n; i++) {
      const shown = bUi.shown.length;
      const t0 = performance.now();
      await a.handleLine(`!msg B ${"x".repeat(100)}`);
      await bUi.until(shown + 1, `a mail (${name})`);
      lat.push(bUi.shown.at(-1)! - t0);
    }
    return lat;
  } finally {
    for (const c of started) await c.quit().catch(() => {});
    await setup.close();
  }
}
