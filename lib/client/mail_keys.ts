/**
 * Our own mailbox keys (PROTOCOL.md section 9.1, "Rotation and top-up"):
 * the X25519 identity key `ik`, made once and certified by our RSA key; a
 * signed prekey, a new one every 7 days, each retired one kept until 31
 * days after it expired; and one-time prekeys, topped up to 100 held by
 * the server. Published after every `welcome` and on `prekeys-low`; every
 * private key goes to the {@link MailVault} before its public half is
 * published, so the server never hands out a key we cannot open.
 *
 * @example
 * ```ts ignore
 * const keys = new MailKeys(ctx, link, vault);
 * keys.onWelcome(); // publish, after each login
 * const me = await keys.identity();
 * ```
 * @module
 */

import { generateX25519, type PrivateIdentity } from "../crypto/mod.ts";
import {
  encodeOneTimePrekey,
  type MailIdentity,
  type MailVault,
  makeIdentityCert,
  makePrekeyCert,
  type OneTimePrekey,
  type ServerToClient,
  type SignedPrekey,
  verifyIdentityOnly,
} from "../proto/mod.ts";
import type { ClientContext } from "./options.ts";
import type { ServerConnection } from "./server_link.ts";

const DAY_MS = 24 * 60 * 60 * 1000;
/** A new signed prekey when the newest is this old (section 9.1). */
export const SPK_ROTATE_MS = 7 * DAY_MS;
/** A signed prekey's `expires` is its `created` plus this. */
export const SPK_LIFETIME_MS = 30 * DAY_MS;
/** A retired signed prekey's private part is kept this long after it expired. */
export const SPK_GRACE_MS = 31 * DAY_MS;
/** One-time prekeys the server should hold for us; also the most one `publish` carries. */
export const OPK_TARGET = 100;
/** The rotation timer looks again at least this often (a timer cannot wait 7 days). */
const ROTATION_CHECK_MAX_MS = DAY_MS;

/** Our mailbox keys and their publishing. */
export class MailKeys {
  #ctx: ClientContext;
  #link: ServerConnection;
  #vault: MailVault;
  #identity: Promise<MailIdentity> | undefined;
  /** The identity key was made by this process: the server holds no one-time prekey of it. */
  #madeIdentity = false;
  /** One-time prekeys the server said it holds, from its last `published`. */
  #held: number | undefined;
  /** Publishes run one at a time, in order. */
  #queue: Promise<void> = Promise.resolve();
  #rotation: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(ctx: ClientContext, link: ServerConnection, vault: MailVault) {
    this.#ctx = ctx;
    this.#link = link;
    this.#vault = vault;
  }

  /**
   * Our identity key: the vault's, else made now (once), certified by our
   * RSA key with the server's time as `created`.
   * @returns the key pair and its `IK_CERT`
   */
  identity(): Promise<MailIdentity> {
    this.#identity ??= this.#loadOrMakeIdentity().catch((e) => {
      this.#identity = undefined; // the next use tries again
      throw e;
    });
    return this.#identity;
  }

  async #loadOrMakeIdentity(): Promise<MailIdentity> {
    const o = this.#ctx.o;
    const kept = await this.#vault.identity();
    // One certified by another RSA key (the user's key was replaced) is as
    // good as lost: the server would refuse it, and peers too.
    if (kept && await certifiedByUs(kept, o.user, o.identity)) return kept;
    const pair = await generateX25519(true);
    const created = this.#link.serverNow();
    const cert = await makeIdentityCert(
      o.identity,
      o.user,
      pair.publicRaw,
      created,
    );
    const made: MailIdentity = { pair, cert, created };
    await this.#vault.saveIdentity(made);
    this.#madeIdentity = true;
    return made;
  }

  /** After each `welcome`: publish our keys (rotating the signed prekey when due). */
  onWelcome(): void {
    this.#enqueue(() => this.#publish(undefined));
  }

  /**
   * The server holds fewer than 20 of our one-time prekeys: publish more.
   * @param left how many it still holds
   */
  onPrekeysLow(left: number): void {
    this.#enqueue(() => this.#publish(left));
  }

  /**
   * @returns once the publishing under way (if any) is over: a client that
   *   logs out right after logging in leaves its keys published
   */
  idle(): Promise<void> {
    return this.#queue;
  }

  /** Stop: no more publishing, the rotation timer cleared. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#rotation);
    this.#rotation = undefined;
  }

  /**
   * `!whoami`'s words about the mailbox keys.
   * @returns one clause
   */
  async describe(): Promise<string> {
    const id = await this.#vault.identity();
    if (!id) return "mail keys: none yet";
    const spk = (await this.#vault.signedPrekeys()).at(-1);
    const held = this.#held === undefined
      ? ""
      : `, ${this.#held} one-time prekeys on the server`;
    const prekey = spk
      ? `, signed prekey #${spk.id} until ${day(spk.expires)}`
      : "";
    return `mail identity key ${id.pair.publicRaw.toHex().slice(0, 16)} made ${
      day(id.created)
    }${prekey}${held}`;
  }

  #enqueue(job: () => Promise<void>): void {
    const run = this.#queue.then(() => this.#stopped ? undefined : job());
    this.#queue = run.catch(() => {});
    this.#ctx.track(run);
  }

  /**
   * Publish `IK_CERT`, the newest `SPK_CERT` and one-time prekeys up to
   * {@link OPK_TARGET} held by the server.
   * @param held what the server said it holds, when it just said so
   */
  async #publish(held: number | undefined): Promise<void> {
    const identity = await this.identity();
    const spk = await this.#signedPrekey(identity);
    this.#scheduleRotation(spk);
    if (held === undefined) {
      // A new identity key: the server holds none of its prekeys. Else ask
      // (a publish of the certificates alone says how many it holds) rather
      // than guess after a restart.
      held = this.#madeIdentity && this.#held === undefined
        ? 0
        : await this.#send(identity, spk, []);
      if (held === undefined) return;
    }
    const want = Math.min(OPK_TARGET, Math.max(0, OPK_TARGET - held));
    if (want === 0) return;
    const opks = await this.#makeOneTimePrekeys(want);
    await this.#send(identity, spk, opks);
  }

  /**
   * One `publish`, its answer awaited.
   * @returns how many one-time prekeys the server holds now, or undefined
   *   when it refused (shown) or the link dropped
   */
  async #send(
    identity: MailIdentity,
    spk: SignedPrekey,
    opks: OneTimePrekey[],
  ): Promise<number | undefined> {
    if (this.#stopped) return undefined;
    const { sent, answer } = this.#link.request({
      t: "publish",
      identityKey: identity.cert.toBase64(),
      signedPrekey: spk.cert.toBase64(),
      oneTimePrekeys: opks.map((k) =>
        encodeOneTimePrekey(k.id, k.pair.publicRaw).toBase64()
      ),
    }, true);
    if (!(await sent)) return undefined;
    const a: ServerToClient | null = await answer;
    if (a === null) return undefined; // the link dropped: the next welcome publishes
    if (a.t === "published") {
      this.#held = a.oneTimePrekeys;
      return a.oneTimePrekeys;
    }
    if (a.t === "error") {
      this.#ctx.print({
        kind: "error",
        code: a.code,
        text:
          `The server refused our mail keys: ${a.message}; mail to us may fail until the next login`,
      });
    }
    return undefined;
  }

  /**
   * The newest signed prekey, a new one first when it is 7 days old or
   * more (or was made for another identity key); retired ones dropped
   * once 31 days past their expiry.
   */
  async #signedPrekey(identity: MailIdentity): Promise<SignedPrekey> {
    const now = this.#link.serverNow();
    const held = await this.#vault.signedPrekeys();
    let newest = held.at(-1);
    if (
      !newest || now - newest.created >= SPK_ROTATE_MS ||
      newest.created < identity.created
    ) {
      const o = this.#ctx.o;
      const id = await this.#vault.allocateIds("spk", 1);
      const pair = await generateX25519(true);
      const expires = now + SPK_LIFETIME_MS;
      const cert = await makePrekeyCert(
        o.identity,
        o.user,
        identity.pair.publicRaw,
        id,
        pair.publicRaw,
        now,
        expires,
      );
      newest = { id, pair, cert, created: now, expires };
      await this.#vault.saveSignedPrekey(newest);
    }
    for (const old of held) {
      if (old.id !== newest.id && now > old.expires + SPK_GRACE_MS) {
        await this.#vault.dropSignedPrekey(old.id);
      }
    }
    return newest;
  }

  async #makeOneTimePrekeys(n: number): Promise<OneTimePrekey[]> {
    const first = await this.#vault.allocateIds("opk", n);
    const opks = await Promise.all(
      Array.from({ length: n }, async (_, i) => ({
        id: first + i,
        pair: await generateX25519(true),
      })),
    );
    // Kept before they are published: the server may hand one out at once.
    await this.#vault.saveOneTimePrekeys(opks);
    return opks;
  }

  /** While logged in, a new signed prekey when the newest turns 7 days old. */
  #scheduleRotation(newest: SignedPrekey): void {
    clearTimeout(this.#rotation);
    if (this.#stopped) return;
    const due = newest.created + SPK_ROTATE_MS - this.#link.serverNow();
    this.#rotation = setTimeout(() => {
      this.#rotation = undefined;
      if (newest.created + SPK_ROTATE_MS > this.#link.serverNow()) {
        this.#scheduleRotation(newest); // not yet: look again later
      } else if (this.#link.connected) {
        // Offline: the next welcome publishes, and rotates first.
        this.#enqueue(() => this.#publish(undefined));
      }
    }, Math.min(Math.max(due, 1000), ROTATION_CHECK_MAX_MS));
  }
}

/** A date in words for `!whoami`: `2026-12-02`. */
function day(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? "?" : d.toISOString().slice(0, 10);
}

async function certifiedByUs(
  id: MailIdentity,
  user: string,
  me: PrivateIdentity,
): Promise<boolean> {
  try {
    const cert = await verifyIdentityOnly({
      user,
      owner: me.publicIdentity,
      identityCert: id.cert,
    });
    return cert.ik.length === id.pair.publicRaw.length &&
      cert.ik.every((b, i) => b === id.pair.publicRaw[i]);
  } catch {
    return false;
  }
}
