/**
 * Mailboxes end to end (PROTOCOL.md section 9, issue 12): a real server
 * over loopback TCP with its SQLite store in a temporary directory, and
 * real clients (`ChatClient`) with their vaults in a temporary key
 * directory (`openMailVault`: seen ids synced before each acknowledgement,
 * as `im chat` keeps them), all in this process so one clock times them.
 *
 * - end-to-end latency to an online recipient: `!msg B ...` typed at A to
 *   the `mail` event at B (fetch a bundle, seal, store with its commit,
 *   push, open, show), one message at a time;
 * - a backlog at login: N messages sealed to B and appended to its log
 *   while B is offline (sealing is not what is timed), then the time from
 *   B's `ChatClient.start` to the last of them shown, in order (target:
 *   10,000 in under 10 s on this machine).
 *
 * @example
 * ```ts ignore
 * import { benchMailFlow } from "./mail_flow.ts";
 * await benchMailFlow({ quick: true, report });
 * ```
 * @module
 */

import { join } from "node:path";
import { Signal, sleep } from "../lib/util/mod.ts";
import { ChatClient, type UiEvent } from "../lib/client/mod.ts";
import { openMailVault } from "../lib/keystore/mod.ts";
import { decodeIdentityCert, decodePrekeyCert } from "../lib/proto/mod.ts";
import { sealMail } from "../lib/proto/mod.ts";
import { ImServer, mailRecord, SqliteMail } from "../lib/server/mod.ts";
import { percentile, type Report } from "./_stats.ts";
import { type BenchKeys, makeKeys } from "./_fixtures.ts";

/** Options of {@link benchMailFlow}. */
export interface MailFlowOptions {
  quick: boolean;
  report: Report;
}

const SECTION = "mail";

/** A UI that counts what it is shown and wakes whoever waits. */
class Watch {
  readonly mails: Array<{ text: string; at: number }> = [];
  readonly errors: string[] = [];
  readonly changed = new Signal();
  print(ev: UiEvent): void {
    if (ev.kind === "mail" && ev.direction === "in") {
      this.mails.push({ text: ev.text, at: performance.now() });
      this.changed.notify();
    } else if (ev.kind === "error") {
      this.errors.push(`${ev.code}: ${ev.text}`);
      this.changed.notify();
    } else if (ev.kind === "system") this.changed.notify();
  }
  setPeer(): void {}
  async until(pred: () => boolean, what: string, ms = 120_000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!pred()) {
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `bench mail: ${what} did not happen; errors: ${
            this.errors.slice(-3).join("; ")
          }`,
        );
      }
      await this.changed.wait(Math.min(left, 500));
    }
  }
}

/**
 * The end-to-end figures of the `mail` section.
 * @param opts mode and report
 */
export async function benchMailFlow(opts: MailFlowOptions): Promise<void> {
  const { report, quick } = opts;
  const keys = await makeKeys(2048);
  const dir = await Deno.makeTempDir({ prefix: "im-bench-mailflow-" });
  const mail = await SqliteMail.open(join(dir, "data", "mail.db"));
  const server = await ImServer.start({
    identity: keys.server,
    clients: new Map([["A", keys.userPublic], ["B", keys.userPublic]]),
    hostname: "127.0.0.1",
    port: 0,
    store: mail.store,
    prekeys: mail.prekeys,
    // The bench sends faster than a person: no rate limit in the way.
    mailRate: 1_000_000,
    mailMaxCount: 20_000,
  });
  const keyDir = join(dir, "keys");
  await Deno.mkdir(keyDir, { mode: 0o700 });
  await Deno.chmod(keyDir, 0o700);
  const clients: ChatClient[] = [];
  const start = async (user: string, ui: Watch) => {
    const c = await ChatClient.start({
      user,
      identity: keys.user,
      pinnedServer: keys.serverPinned,
      serverHost: "127.0.0.1",
      serverPort: server.port,
      ui,
      mailVault: await openMailVault(keyDir, user),
      reconnect: false,
    });
    clients.push(c);
    return c;
  };
  try {
    const aUi = new Watch();
    const bUi = new Watch();
    const a = await start("A", aUi);
    let b = await start("B", bUi);
    // Both publish their keys after the welcome; a first message pins and
    // verifies them.
    await published(mail, ["A", "B"]);
    await a.handleLine("!msg B warm-up");
    await bUi.until(
      () => bUi.mails.length === 1,
      `the warm-up mail (A's errors: ${aUi.errors.join("; ")})`,
    );

    const n = quick ? 50 : 300;
    const lat: number[] = [];
    for (let i = 0; i < n; i++) {
      const shown = bUi.mails.length;
      const t0 = performance.now();
      await a.handleLine(`!msg B ${"x".repeat(100)}`);
      await bUi.until(() => bUi.mails.length > shown, "a live mail");
      lat.push(bUi.mails.at(-1)!.at - t0);
    }
    report.add(
      SECTION,
      "end-to-end latency to an online recipient p50",
      percentile(lat, 50),
      "ms",
      {
        note:
          `${n} mails of 100 chars one at a time: fetch, seal, commit, push, open, seen synced`,
      },
    );
    report.add(
      SECTION,
      "end-to-end latency to an online recipient p99",
      percentile(lat, 99),
      "ms",
    );

    // The backlog: B offline, N mails sealed by A's identity key to B's
    // published keys (no one-time prekey: the pool holds 100), appended to
    // B's log as the server's `send` would.
    await b.quit();
    const backlog = quick ? 1000 : 10_000;
    await fillBacklog(keys, mail, keyDir, backlog);
    const bUi2 = new Watch();
    const t0 = performance.now();
    b = await start("B", bUi2);
    await bUi2.until(
      () => bUi2.mails.length >= backlog,
      `${backlog} mails at login`,
      300_000,
    );
    const seconds = (bUi2.mails.at(-1)!.at - t0) / 1000;
    const inOrder = bUi2.mails.every((m, i) => m.text === `backlog ${i}`);
    report.add(
      SECTION,
      `deliver a ${backlog}-message backlog at login`,
      seconds,
      "s",
      {
        limit: 10 * backlog / 10_000,
        limitSource: "issue 12: 10,000 in under 10 s",
        note: `${Math.round(backlog / seconds)} mails/s, ${
          inOrder ? "all in order" : "OUT OF ORDER"
        }; login included`,
      },
    );
  } finally {
    for (const c of clients) await c.quit().catch(() => {});
    await server.close();
    await mail.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Wait until each user's client has published its mailbox keys. */
async function published(mail: SqliteMail, users: string[]): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (const u of users) {
    while (!(await mail.prekeys.certs(u))) {
      if (performance.now() > deadline) {
        throw new Error(`bench mail: ${u} did not publish its keys`);
      }
      await sleep(10);
    }
  }
}

/** Seal `n` mails from A to B and append them to B's log. */
async function fillBacklog(
  keys: BenchKeys,
  mail: SqliteMail,
  keyDir: string,
  n: number,
): Promise<void> {
  const certs = await mail.prekeys.certs("B");
  if (!certs) throw new Error("bench mail: B never published its keys");
  const ik = decodeIdentityCert(certs.identityCert);
  const spk = decodePrekeyCert(certs.signedPrekeyCert);
  const vaultA = await openMailVault(keyDir, "A");
  const idA = await vaultA.identity();
  if (!idA) throw new Error("bench mail: A has no identity key");
  for (let i = 0; i < n; i++) {
    const sealed = await sealMail({
      sender: "A",
      recipient: "B",
      senderFingerprint: keys.user.fingerprintBytes,
      recipientFingerprint: keys.user.fingerprintBytes,
      senderIdentity: idA.pair,
      recipientIdentityKey: ik.ik,
      signedPrekey: { id: spk.id, key: spk.spk },
      text: `backlog ${i}`,
      time: Date.now(),
    });
    await mail.store.append("B", mailRecord(sealed.mail));
  }
}
