/**
 * {@link PublishedKeys}: the key requests of the mailbox (PROTOCOL.md
 * section 9.1, 9.7, 9.8): `publish` a user's own certificates and one-time
 * prekeys, `fetch` another's bundle (taking one of its one-time prekeys) and
 * `keys` (its certificates alone), and `prekeys-low` to an owner who runs
 * short. The server checks the certificates against the enrolled RSA keys
 * and keeps them behind the {@link Prekeys} seam. The `Mailbox`
 * (mailbox.ts) is the facade that hands it these requests and counts its
 * refusals.
 *
 * @example
 * ```ts ignore
 * const keys = new PublishedKeys({ prekeys, clients, session, limits, log, refuse });
 * await keys.fetch(s, { t: "fetch", user: "B" }, reply); // a `bundle`, or `no-mailbox`
 * ```
 * @module
 */

import type { PublicIdentity } from "../crypto/mod.ts";
import {
  type ClientToServer,
  decodeIdentityCert,
  decodeOneTimePrekey,
  decodePrekeyCert,
  type IdentityCert,
  type PrekeyCert,
  verifyIdentityCert,
  verifyPrekeyCert,
} from "../proto/mod.ts";
import type { Logger } from "../util/mod.ts";
import type { RequestLimits } from "./limits.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type { Prekeys, PublishedPrekey } from "./seams.ts";

/** One-time prekeys the server holds per user, at most (PROTOCOL.md 9.8). */
export const MAX_HELD_PREKEYS = 200;
/** One-time prekeys in one `publish`, at most (PROTOCOL.md 9.7). */
export const MAX_PUBLISHED_PREKEYS = 100;
/** Fewer one-time prekeys than this left: the owner is told (`prekeys-low`). */
export const LOW_PREKEYS = 20;

/** Answer `error` with `code` and `message`, counting the refusal. */
export type Refuse = (
  reply: Reply,
  code: string,
  message: string,
) => Promise<void>;

/** Settings of {@link PublishedKeys}: the `Mailbox`'s, in part. */
export interface PublishedKeysOptions {
  prekeys: Prekeys;
  /** The client directory as it is now (it changes on a reload). */
  clients: () => Map<string, PublicIdentity>;
  /** A user's connection on this node, if any. */
  session: (user: string) => ClientSession | undefined;
  /** The per-user buckets: `send` (shared by `fetch`), `keys`, `publish`. */
  limits: RequestLimits;
  log: Logger;
  /** How a request is refused (the `Mailbox` counts it). */
  refuse: Refuse;
}

type Msg<T extends ClientToServer["t"]> = Extract<ClientToServer, { t: T }>;

/** The keys this node's users published, and the requests for them. */
export class PublishedKeys {
  #o: PublishedKeysOptions;
  /** Connections told `prekeys-low` since their user last held enough. */
  #lowSent = new WeakSet<ClientSession>();

  /** @param o the seams, limits and how to refuse */
  constructor(o: PublishedKeysOptions) {
    this.#o = o;
  }

  /**
   * `publish` (PROTOCOL.md 9.1, 9.8): both certificates decode, name the
   * user and verify with its enrolled RSA key; the signed prekey is not
   * older than the one held; the one-time prekeys decode, at most 100 of
   * them and 200 held in all.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `published`, or `error` `bad-keys`,
   *   `too-many-prekeys`, `rate-limited`
   */
  async publish(
    s: ClientSession,
    m: Msg<"publish">,
    reply: Reply,
  ): Promise<void> {
    const user = s.user;
    if (!this.#o.limits.take(user, "publish")) {
      return this.#refuse(
        reply,
        "rate-limited",
        "Too many key publications; wait a moment and try again",
      );
    }
    if (m.oneTimePrekeys.length > MAX_PUBLISHED_PREKEYS) {
      return this.#refuse(
        reply,
        "too-many-prekeys",
        `Keys refused: ${m.oneTimePrekeys.length} one-time prekeys in one publish, over the limit of ${MAX_PUBLISHED_PREKEYS}`,
      );
    }
    let ic: IdentityCert, pc: PrekeyCert;
    let icBytes: Uint8Array, pcBytes: Uint8Array;
    const oneTime: PublishedPrekey[] = [];
    try {
      icBytes = fromBase64(m.identityKey, "identity key");
      pcBytes = fromBase64(m.signedPrekey, "signed prekey");
      ic = decodeIdentityCert(icBytes);
      pc = decodePrekeyCert(pcBytes);
      for (const b64 of m.oneTimePrekeys) {
        const opk = fromBase64(b64, "one-time prekey");
        oneTime.push({ id: decodeOneTimePrekey(opk).id, opk });
      }
    } catch (e) {
      return this.#refuse(
        reply,
        "bad-keys",
        `Keys refused: ${(e as Error).message}`,
      );
    }
    if (ic.user !== user || pc.user !== user) {
      return this.#refuse(
        reply,
        "bad-keys",
        "Keys refused: a certificate names another user",
      );
    }
    const owner = this.#o.clients().get(user);
    if (
      !owner || !(await verifyIdentityCert(ic, owner)) ||
      !(await verifyPrekeyCert(pc, owner, ic.ik))
    ) {
      return this.#refuse(
        reply,
        "bad-keys",
        "Keys refused: a signature does not verify with your enrolled key",
      );
    }
    const held = await this.#o.prekeys.certs(user);
    const heldCreated = held && createdOf(held.signedPrekeyCert);
    if (heldCreated !== undefined && pc.created < heldCreated) {
      return this.#refuse(
        reply,
        "bad-keys",
        "Keys refused: the signed prekey is older than the one the server holds",
      );
    }
    const distinct = new Set(oneTime.map((k) => k.id)).size;
    const count = await this.#o.prekeys.count(user);
    if (count + distinct > MAX_HELD_PREKEYS) {
      return this.#refuse(
        reply,
        "too-many-prekeys",
        `Keys refused: the server holds ${count} one-time prekeys of yours; ${distinct} more would pass the limit of ${MAX_HELD_PREKEYS}`,
      );
    }
    const left = await this.#o.prekeys.publish(
      user,
      { identityCert: icBytes, signedPrekeyCert: pcBytes },
      oneTime,
    );
    if (left >= LOW_PREKEYS) this.#lowSent.delete(s);
    await reply({ t: "published", oneTimePrekeys: left });
  }

  /**
   * `fetch`: the user's bundle with one of its one-time prekeys, which is
   * now removed (or `""` once none is left); its owner is told when fewer
   * than {@link LOW_PREKEYS} are left.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `bundle`, or `error` `no-mailbox`, `rate-limited`
   */
  async fetch(s: ClientSession, m: Msg<"fetch">, reply: Reply): Promise<void> {
    if (!this.#o.limits.take(s.user, "send")) {
      return this.#refuse(
        reply,
        "rate-limited",
        "Too many mails; wait a moment and try again",
      );
    }
    const identity = this.#o.clients().get(m.user);
    const got = identity && (await this.#o.prekeys.take(m.user));
    if (!identity || !got) return noMailbox(this.#o.refuse, reply, m.user);
    await reply({
      t: "bundle",
      user: m.user,
      identity: identity.publicDer.toBase64(),
      identityKey: got.certs.identityCert.toBase64(),
      signedPrekey: got.certs.signedPrekeyCert.toBase64(),
      oneTimePrekey: got.oneTime?.opk.toBase64() ?? "",
    });
    // The bundle is the answer: a failure to tell the owner is only logged.
    if (got.oneTime) {
      await this.#checkLow(m.user).catch((e) =>
        this.#o.log("mail-store-failed", {
          user: m.user,
          request: "prekeys-low",
          error: (e as Error).message,
        })
      );
    }
  }

  /**
   * `keys`: the user's certificates, no one-time prekey.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `bundle` with `oneTimePrekey` `""`, or `error`
   *   `no-mailbox`, `rate-limited`
   */
  async keys(s: ClientSession, m: Msg<"keys">, reply: Reply): Promise<void> {
    if (!this.#o.limits.take(s.user, "keys")) {
      return this.#refuse(
        reply,
        "rate-limited",
        "Too many key requests; wait a moment and try again",
      );
    }
    const identity = this.#o.clients().get(m.user);
    const certs = identity && (await this.#o.prekeys.certs(m.user));
    if (!identity || !certs) return noMailbox(this.#o.refuse, reply, m.user);
    await reply({
      t: "bundle",
      user: m.user,
      identity: identity.publicDer.toBase64(),
      identityKey: certs.identityCert.toBase64(),
      signedPrekey: certs.signedPrekeyCert.toBase64(),
      oneTimePrekey: "",
    });
  }

  /** Tell the owner, once per login and drop, that its one-time prekeys run low. */
  async #checkLow(owner: string): Promise<void> {
    const s = this.#o.session(owner);
    if (!s) return;
    if (this.#lowSent.has(s)) return;
    const left = await this.#o.prekeys.count(owner);
    if (left >= LOW_PREKEYS || this.#lowSent.has(s)) return;
    this.#lowSent.add(s);
    await s.channel.send({ t: "prekeys-low", left }).catch(() => {});
  }

  #refuse(reply: Reply, code: string, message: string): Promise<void> {
    return this.#o.refuse(reply, code, message);
  }
}

/**
 * The same answer for a user never enrolled and one who never published
 * (PROTOCOL.md 9.8).
 * @param refuse how to refuse
 * @param reply the request's answer
 * @param user the user asked for
 * @returns when it is sent
 */
export function noMailbox(
  refuse: Refuse,
  reply: Reply,
  user: string,
): Promise<void> {
  return refuse(reply, "no-mailbox", `${user} has no mailbox`);
}

/**
 * Base64 (RFC 4648 section 4) to bytes; anything else is a typed refusal.
 * @param s the field as sent
 * @param what its name, for the message
 * @returns the bytes
 * @throws {TypeError} `the <what> is not base64`
 */
export function fromBase64(s: string, what: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(s, { lastChunkHandling: "strict" });
  } catch {
    throw new TypeError(`the ${what} is not base64`);
  }
}

/** The `created` of a held `SPK_CERT`, or undefined when it no longer decodes. */
function createdOf(cert: Uint8Array): number | undefined {
  try {
    return decodePrekeyCert(cert).created;
  } catch {
    return undefined;
  }
}
