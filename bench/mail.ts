/**
 * Mailboxes (PROTOCOL.md section 9, issue 12): what sealing and opening one
 * message costs (the four X25519 operations shown apart), what a durable
 * append to the SQLite store costs (commit latency, WAL with
 * `synchronous=FULL`), and the bytes on disk per 100-character message.
 * The end-to-end figures (latency to an online recipient, a 10,000-message
 * backlog at login) are in `bench/mail_flow.ts`.
 *
 * The limits beside them, measured in the same run: one X25519 operation
 * (`deriveBits`) for the seal and open, and a bare `fdatasync` of a small
 * write to a file in the same temporary directory for the store commit (a
 * commit in WAL mode with `synchronous=FULL` is at least one such sync).
 *
 * @example
 * ```ts ignore
 * import { benchMailCrypto } from "./mail.ts";
 * await benchMailCrypto({ quick: true, report });
 * ```
 * @module
 */

import { join } from "node:path";
import { randomBytes } from "../lib/util/mod.ts";
import {
  generateRsaKeyPair,
  generateX25519,
  loadPrivateIdentity,
  sharedSecret,
} from "../lib/crypto/mod.ts";
import {
  decodeMail,
  makeIdentityCert,
  makePrekeyCert,
  openMail,
  sealMail,
  verifyBundle,
} from "../lib/proto/mod.ts";
import { SqliteStore } from "../lib/server/mod.ts";
import { percentile, type Report, timeAsync } from "./_stats.ts";

/** Options of {@link benchMailCrypto}. */
export interface MailBenchOptions {
  quick: boolean;
  report: Report;
}

const SECTION = "mail";
const TEXT = "x".repeat(100);

/**
 * The crypto and store figures of the `mail` section.
 * @param opts mode and report
 */
export async function benchMailCrypto(opts: MailBenchOptions): Promise<void> {
  const { report, quick } = opts;
  const n = quick ? 300 : 2000;
  const aliceRsa = await loadPrivateIdentity(
    (await generateRsaKeyPair(2048)).privatePem,
  );
  const bobRsa = await loadPrivateIdentity(
    (await generateRsaKeyPair(2048)).privatePem,
  );
  const ikA = await generateX25519(false);
  const ikB = await generateX25519(false);
  const spkB = await generateX25519(false);
  const opkB = await generateX25519(false);

  // The limit: one X25519 operation, as WebCrypto does it.
  const x25519 = await timeAsync(() => sharedSecret(ikA, spkB.publicRaw), n);
  const x25519P50 = percentile(x25519, 50);
  report.add(SECTION, "x25519 one operation p50", x25519P50 * 1000, "us", {
    note: `${n} deriveBits calls; a seal does 4 (DH1..DH4), an open 4`,
  });

  const seal = () =>
    sealMail({
      sender: "A",
      recipient: "B",
      senderFingerprint: aliceRsa.fingerprintBytes,
      recipientFingerprint: bobRsa.fingerprintBytes,
      senderIdentity: ikA,
      recipientIdentityKey: ikB.publicRaw,
      signedPrekey: { id: 1, key: spkB.publicRaw },
      oneTimePrekey: { id: 1, key: opkB.publicRaw },
      text: TEXT,
      time: Date.now(),
    });
  const sealTimes = await timeAsync(seal, n);
  report.add(
    SECTION,
    "seal one message p50 (X3DH with a one-time prekey)",
    percentile(sealTimes, 50) * 1000,
    "us",
    {
      limit: 4 * x25519P50 * 1000,
      limitSource: "4 x25519 operations",
      note: "fresh ephemeral key, 4 DH, 5 HKDF, MD-CFB + HMAC of 128 B",
    },
  );
  const sealed = decodeMail((await seal()).mail);
  const open = () =>
    openMail({
      mail: sealed,
      senderFingerprint: aliceRsa.fingerprintBytes,
      recipientFingerprint: bobRsa.fingerprintBytes,
      identity: ikB,
      signedPrekey: spkB,
      oneTimePrekey: opkB,
    });
  const openTimes = await timeAsync(open, n);
  report.add(
    SECTION,
    "open one message p50",
    percentile(openTimes, 50) * 1000,
    "us",
    {
      limit: 4 * x25519P50 * 1000,
      limitSource: "4 x25519 operations",
      note: "MAC checked before decrypting",
    },
  );

  // Verifying a bundle: two RSA-PSS verifications (once per recipient, then
  // only when its signed prekey changes).
  const ikCert = await makeIdentityCert(bobRsa, "B", ikB.publicRaw, Date.now());
  const spkCert = await makePrekeyCert(
    bobRsa,
    "B",
    ikB.publicRaw,
    1,
    spkB.publicRaw,
    Date.now(),
    Date.now() + 30 * 86_400_000,
  );
  const verify = await timeAsync(
    () =>
      verifyBundle({
        user: "B",
        owner: bobRsa.publicIdentity,
        identityCert: ikCert,
        signedPrekeyCert: spkCert,
        now: Date.now(),
      }),
    quick ? 100 : 500,
  );
  report.add(
    SECTION,
    "verify a prekey bundle p50 (2 RSA-PSS 2048)",
    percentile(verify, 50) * 1000,
    "us",
    { note: "once per recipient, and when its signed prekey changes" },
  );

  await benchStore(report, quick, (await seal()).mail);
}

/** A bare fdatasync of a small write: the floor of one durable commit. */
async function syncFloor(dir: string, n: number): Promise<number[]> {
  const f = await Deno.open(join(dir, "sync-floor"), {
    create: true,
    write: true,
  });
  try {
    const buf = randomBytes(256);
    return await timeAsync(async () => {
      await f.write(buf);
      await f.syncData();
    }, n);
  } finally {
    f.close();
  }
}

async function benchStore(
  report: Report,
  quick: boolean,
  mail: Uint8Array,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im-bench-mail-" });
  try {
    const n = quick ? 300 : 2000;
    const floor = await syncFloor(dir, n);
    const path = join(dir, "data", "mail.db");
    const store = await SqliteStore.open(path);
    const record = new Uint8Array(1 + mail.length);
    record[0] = 0x01;
    record.set(mail, 1);
    let i = 0;
    const times = await timeAsync(
      () => store.append(`u${i++ % 50}`, record),
      n,
    );
    report.add(
      SECTION,
      "store commit latency p50 (SQLite, WAL, synchronous=FULL)",
      percentile(times, 50) * 1000,
      "us",
      {
        limit: percentile(floor, 50) * 1000,
        limitSource: "bare write + fdatasync of 256 B",
        note: `${n} appends of a ${record.length}-byte record`,
      },
    );
    report.add(
      SECTION,
      "store commit latency p99",
      percentile(times, 99) * 1000,
      "us",
      {
        limit: percentile(floor, 99) * 1000,
        limitSource: "bare fdatasync p99",
      },
    );
    await store.close();
    // Bytes on disk per message: the file after a checkpoint, over the
    // records it holds (the WAL is folded in at close).
    const total = (await Deno.stat(path)).size;
    report.add(
      SECTION,
      "bytes on disk per 100-character message",
      total / (n + 3),
      "B",
      {
        limit: record.length,
        limitSource: "the sealed record itself",
        note:
          "SQLite file after close, over the records appended (B-tree pages and the index on time included)",
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
