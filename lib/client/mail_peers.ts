/**
 * The keys of the users we mail with (PROTOCOL.md section 9.1, "The peer's
 * keys"; 9.2 steps 2-3; 9.4 step 2): the RSA key the server names is
 * checked against the pin that peer sessions use too (one pin serves
 * both), the certificates against that key and against the ones verified
 * before (kept in the {@link MailVault}); and the user's commands about
 * them: `!trust` of a key seen only by mail, `!verify`, and what `!keys`
 * adds.
 * @module
 */

import { type PublicIdentity, publicIdentityFromDer } from "../crypto/mod.ts";
import {
  decodeIdentityCert,
  type IdentityCert,
  type MailVault,
  type PrekeyCert,
  type ServerToClient,
  verifyBundle,
  verifyIdentityOnly,
} from "../proto/mod.ts";
import { isImError, ProtocolError, sleep } from "../util/mod.ts";
import type { ClientContext } from "./options.ts";
import {
  namedIdentity,
  noteChangedKey,
  pinFirstUse,
  pinsOf,
} from "./pinning.ts";
import type { ServerConnection } from "./server_link.ts";

/** Tries of a `keys` the server refused as `rate-limited`, one a {@link KEYS_RETRY_MS}. */
const KEYS_RETRIES = 10;
/** The `keys` bucket refills one a second (PROTOCOL.md section 5.2). */
const KEYS_RETRY_MS = 1000;

/** A `bundle` message: the answer to `fetch` and to `keys`. */
export type Bundle = Extract<ServerToClient, { t: "bundle" }>;

/** A recipient's keys, verified for sealing (9.2 step 3). */
export interface VerifiedBundle {
  /** Its pinned RSA key. */
  owner: PublicIdentity;
  identity: IdentityCert;
  prekey: PrekeyCert;
}

/** A sender's identity, checked for opening (9.4 step 2). */
export interface KnownSender {
  /** Its pinned RSA key (its fingerprint goes into `ad`). */
  owner: PublicIdentity;
  /** Its X25519 identity key, from its verified `IK_CERT`. */
  ik: Uint8Array;
}

/** Ask the server for something; null when the link dropped or it took too long. */
export async function ask(
  link: ServerConnection,
  m: Parameters<ServerConnection["request"]>[0],
): Promise<ServerToClient | null> {
  const { sent, answer } = link.request(m, true);
  if (!(await sent)) return null;
  return await answer;
}

/**
 * The answer to `fetch` or `keys` of `user` as a bundle, else why not.
 * @throws {ProtocolError} the server's error code (`no-mailbox`, ...);
 *   `no-answer` when none came; `unexpected-message`
 */
export function bundleOf(
  user: string,
  a: ServerToClient | null,
  link: ServerConnection,
): Bundle {
  if (a === null) {
    throw new ProtocolError(
      link.connected ? "no-answer" : "offline",
      link.connected
        ? "The server did not answer"
        : "Not connected to the server",
    );
  }
  if (a.t === "error") throw new ProtocolError(a.code, a.message);
  if (a.t !== "bundle" || a.user !== user) {
    throw new ProtocolError(
      "unexpected-message",
      `The server answered with a "${a.t}" message instead of ${user}'s keys`,
    );
  }
  return a;
}

/** The mailbox side of the peers' keys. */
export class MailPeers {
  #ctx: ClientContext;
  #link: ServerConnection;
  #vault: MailVault;
  /**
   * Senders whose pinned key and identity key were checked, so a backlog
   * from one sender reads its pin and certificates once, not per message.
   * Forgotten on `!trust` (the pin changes only then).
   */
  #known = new Map<string, KnownSender>();

  constructor(ctx: ClientContext, link: ServerConnection, vault: MailVault) {
    this.#ctx = ctx;
    this.#link = link;
    this.#vault = vault;
  }

  /**
   * Section 9.2 steps 2 and 3: the RSA key against the pin, both
   * certificates against it and against those verified before; then pin
   * on first use and keep the certificates.
   * @param b the `bundle` answering our `fetch`
   * @returns the keys to seal to
   * @throws `peer-key-changed`, `bad-identity`, `bad-bundle`,
   *   `prekey-expired`, `prekey-rollback`
   */
  async forSending(b: Bundle): Promise<VerifiedBundle> {
    const to = b.user;
    const named = await namedIdentity(
      this.#ctx,
      to,
      b.identity,
      "refusing to send",
    );
    const identityCert = base64(b.identityKey, to);
    const signedPrekeyCert = base64(b.signedPrekey, to);
    const previous = await this.#vault.peerCerts(to);
    const { identity, prekey } = await verifyBundle({
      user: to,
      owner: named.identity,
      identityCert,
      signedPrekeyCert,
      now: this.#link.serverNow(),
      previous,
    });
    await pinFirstUse(
      this.#ctx,
      named,
      `First message to ${to}`,
      `compare it with ${to} (!keys ${to}), or the code of a session, to be sure; then !verify ${to}`,
    );
    // Written only when they changed: most messages reuse the last bundle's.
    if (
      !previous || !equal(previous.identityCert, identityCert) ||
      !previous.signedPrekeyCert ||
      !equal(previous.signedPrekeyCert, signedPrekeyCert)
    ) {
      await this.#vault.savePeerCerts(to, { identityCert, signedPrekeyCert });
    }
    return { owner: named.identity, identity, prekey };
  }

  /**
   * Section 9.4 step 2, the sender's side: its pinned RSA key and its
   * identity key, from the certificates verified before when `ik` is
   * theirs, else from the server (`keys`), checked and kept. Asks the
   * server at most once per sender per link (`asked`), so a flood of
   * messages under unknown keys costs one request.
   * @param sender the header's sender
   * @param ik the header's `ik_a`
   * @param asked senders whose keys were fetched on this link
   * @param signal aborted when the stream ends: no more retries
   * @returns the sender's keys (its `ik` may still differ from `ik`: the
   *   caller refuses then)
   * @throws `peer-key-changed`, `bad-identity`, `bad-bundle`,
   *   `prekey-rollback`, the server's error, `no-answer`
   */
  async forReceiving(
    sender: string,
    ik: Uint8Array,
    asked: Set<string>,
    signal: AbortSignal,
  ): Promise<KnownSender> {
    const known = this.#known.get(sender);
    if (known && equal(known.ik, ik)) return known;
    const previous = await this.#vault.peerCerts(sender);
    const pinned = await pinsOf(this.#ctx).load(sender);
    const before = previous && decodeIdentityCert(previous.identityCert);
    if (pinned && before && equal(before.ik, ik)) {
      const k = { owner: pinned, ik: before.ik };
      this.#known.set(sender, k);
      return k;
    }
    if (pinned && before && asked.has(sender)) {
      return { owner: pinned, ik: before.ik };
    }
    asked.add(sender);
    // A backlog from many new senders meets the `keys` bucket (10, then 1 a
    // second, section 5.2): wait for it rather than refuse their mail.
    let a = await ask(this.#link, { t: "keys", user: sender });
    for (
      let i = 0;
      i < KEYS_RETRIES && a?.t === "error" && a.code === "rate-limited" &&
      !signal.aborted;
      i++
    ) {
      await sleep(KEYS_RETRY_MS, signal);
      if (!signal.aborted) {
        a = await ask(this.#link, { t: "keys", user: sender });
      }
    }
    const b = bundleOf(sender, a, this.#link);
    const named = await namedIdentity(
      this.#ctx,
      sender,
      b.identity,
      "refusing mail from them",
    );
    const identityCert = base64(b.identityKey, sender);
    const identity = await verifyIdentityOnly({
      user: sender,
      owner: named.identity,
      identityCert,
      previous,
    });
    await pinFirstUse(
      this.#ctx,
      named,
      `First message from ${sender}`,
      `compare it with ${sender} (!keys ${sender}), or the code of a session, to be sure; then !verify ${sender}`,
    );
    // The signed prekey verified before stays only under the same identity key.
    const keep = before && equal(before.ik, identity.ik)
      ? previous?.signedPrekeyCert
      : undefined;
    await this.#vault.savePeerCerts(
      sender,
      keep === undefined ? { identityCert } : {
        identityCert,
        signedPrekeyCert: keep,
      },
    );
    const k = { owner: named.identity, ik: identity.ik };
    this.#known.set(sender, k);
    return k;
  }

  /**
   * The RSA key pinned for `user` (PROTOCOL.md 10.1: a room's list is
   * checked against its creator's, a leave against its member's): the pin
   * when there is one, else the key the server names (`keys`), pinned now
   * on first use, as for mail.
   * @param user whose key
   * @returns the pinned key
   * @throws `peer-key-changed`, `bad-identity`, the server's error,
   *   `no-answer`
   */
  async ownerOf(user: string): Promise<PublicIdentity> {
    if (user === this.#ctx.o.user) return this.#ctx.o.identity.publicIdentity;
    const pinned = this.#known.get(user)?.owner ??
      await pinsOf(this.#ctx).load(user);
    if (pinned) return pinned;
    let a = await ask(this.#link, { t: "keys", user });
    for (
      let i = 0;
      i < KEYS_RETRIES && a?.t === "error" && a.code === "rate-limited";
      i++
    ) {
      await sleep(KEYS_RETRY_MS);
      a = await ask(this.#link, { t: "keys", user });
    }
    const b = bundleOf(user, a, this.#link);
    const named = await namedIdentity(
      this.#ctx,
      user,
      b.identity,
      "refusing what it signs",
    );
    await pinFirstUse(
      this.#ctx,
      named,
      `First room with ${user}`,
      `compare it with ${user} (!keys ${user}), or the code of a session, to be sure; then !verify ${user}`,
    );
    return named.identity;
  }

  /**
   * `!trust <peer>` when no refused key waits (PROTOCOL.md section 9.1):
   * ask the server for the peer's key now. One that differs from the pin is
   * shown beside it and remembered, and the next `!trust <peer>` pins it:
   * a key is pinned only once the user has seen its fingerprint, as after
   * a refusal.
   * @param peer the user
   * @returns the line to show
   */
  async trustFetched(peer: string): Promise<string> {
    const nothing =
      `No changed key was seen for ${peer}: nothing to trust (!keys ${peer} shows the pinned one)`;
    let named: PublicIdentity;
    try {
      const b = bundleOf(
        peer,
        await ask(this.#link, { t: "keys", user: peer }),
        this.#link,
      );
      named = await publicIdentityFromDer(
        base64(b.identity, peer),
        `${peer}'s key`,
      );
    } catch {
      return nothing; // no keys to compare (never published, offline)
    }
    const pinned = await pinsOf(this.#ctx).load(peer);
    if (!pinned || pinned.fingerprint === named.fingerprint) return nothing;
    noteChangedKey(this.#ctx, peer, named);
    return `No changed key was seen for ${peer} in a refusal, but the server now names ${named.fingerprint} for ${peer}, not the pinned ${pinned.fingerprint}: compare it with ${peer} out of band, then type !trust ${peer} again to pin it`;
  }

  /**
   * `!verify <peer>`: mark the pinned key verified.
   * @param peer the user
   * @returns the line to show
   * @throws {ProtocolError} `not-pinned` when no key is pinned for `peer`
   */
  async verify(peer: string): Promise<string> {
    const pinned = await pinsOf(this.#ctx).load(peer);
    if (!pinned) {
      throw new ProtocolError(
        "not-pinned",
        `No key pinned for ${peer}: a session or a mail with ${peer} pins it first`,
      );
    }
    await this.#vault.setVerified(peer, pinned.fingerprint);
    return `${peer}'s key ${pinned.fingerprint} is now marked verified. Do this only after comparing the code of a session with ${peer}, or this fingerprint, with ${peer} out of band`;
  }

  /**
   * What `!keys <peer>` adds to the pin: whether the user verified it.
   * @param peer the user
   * @returns a clause starting with "; ", or "" when nothing is pinned
   */
  async verifiedClause(peer: string): Promise<string> {
    const pinned = await pinsOf(this.#ctx).load(peer).catch(() => undefined);
    if (!pinned) return "";
    const fp = await this.#vault.verified(peer);
    if (fp === pinned.fingerprint) return "; verified by you";
    return fp === undefined
      ? `; not verified (compare it with ${peer}, then !verify ${peer})`
      : `; NOT verified: you verified ${fp}, another key`;
  }

  /**
   * After `!trust` of a refused key: its mail certificates and verified
   * mark belonged to the old key.
   * @param peer the user
   */
  async forget(peer: string): Promise<void> {
    this.#known.delete(peer);
    await this.#vault.forgetPeer(peer);
  }
}

function base64(s: string, user: string): Uint8Array<ArrayBuffer> {
  try {
    return Uint8Array.fromBase64(s);
  } catch {
    throw new ProtocolError(
      "bad-bundle",
      `Keys of "${user}" refused: not base64`,
    );
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * @param e a failure
 * @returns its code, or `internal`
 */
export function codeOf(e: unknown): string {
  return isImError(e) ? e.code : "internal";
}
