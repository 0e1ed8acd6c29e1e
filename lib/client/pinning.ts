/**
 * Key continuity on the client's side (PROTOCOL.md section 6): the key the
 * server names for a partner (`grant` or `join` `identity`) is checked
 * against the one pinned for that partner before any handshake, and pinned
 * on first use once the partner's signature proved it. Pins live where
 * {@link ClientOptions.peerPins} says (the key directory, for `im chat`),
 * else in memory for the client's life ({@link MemoryPeerPins}).
 * @module
 */

import { type PublicIdentity, publicIdentityFromDer } from "../crypto/mod.ts";
import type { PeerPins, PinAction } from "../proto/mod.ts";
import { AuthError, isImError, KeyError, ProtocolError } from "../util/mod.ts";
import type { ClientContext } from "./options.ts";

/**
 * Pins kept in memory, for a client without a key directory (tests, the
 * demo): they last as long as the client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPublicIdentity } from "../crypto/mod.ts";
 * import { MemoryPeerPins } from "./pinning.ts";
 * const pins = new MemoryPeerPins();
 * const b = await loadPublicIdentity((await generateRsaKeyPair(2048)).publicPem);
 * assert.equal(await pins.pin("B", b), "pinned");
 * assert.equal((await pins.load("B"))?.fingerprint, b.fingerprint);
 * ```
 */
export class MemoryPeerPins implements PeerPins {
  #pins = new Map<string, PublicIdentity>();

  /** @returns the key pinned for `peer`, if any */
  load(peer: string): Promise<PublicIdentity | undefined> {
    return Promise.resolve(this.#pins.get(peer));
  }

  /**
   * Pin unless a key is pinned; never overwrite.
   * @returns `pinned` or `kept`
   * @throws {KeyError} `peer-key-changed` when another key is pinned
   */
  pin(peer: string, identity: PublicIdentity): Promise<PinAction> {
    const old = this.#pins.get(peer);
    if (!old) {
      this.#pins.set(peer, identity);
      return Promise.resolve("pinned");
    }
    if (old.fingerprint === identity.fingerprint) {
      return Promise.resolve("kept");
    }
    return Promise.reject(
      new KeyError(
        "peer-key-changed",
        `Refusing to pin ${identity.fingerprint} for ${peer}: ${old.fingerprint} is pinned`,
      ),
    );
  }

  /** Replace the pin of `peer` (the user's `!trust`). */
  replace(peer: string, identity: PublicIdentity): Promise<void> {
    this.#pins.set(peer, identity);
    return Promise.resolve();
  }

  /** @returns undefined: these pins are in memory */
  where(_peer: string): string | undefined {
    return undefined;
  }

  /**
   * Forget the pin of `peer`, as removing its file does.
   * @param peer the partner
   */
  forget(peer: string): void {
    this.#pins.delete(peer);
  }
}

const MEMORY_PINS = new WeakMap<ClientContext, MemoryPeerPins>();

/**
 * The client's pins: its options' store, else one in memory for its life.
 * @param ctx the client
 * @returns the pin store
 */
export function pinsOf(ctx: ClientContext): PeerPins {
  if (ctx.o.peerPins) return ctx.o.peerPins;
  let pins = MEMORY_PINS.get(ctx);
  if (!pins) MEMORY_PINS.set(ctx, pins = new MemoryPeerPins());
  return pins;
}

/** The key the server named for a partner, checked against our pin. */
export interface NamedIdentity {
  /** The partner. */
  peer: string;
  /** The key the server named; the partner's FINISHED must be signed by it. */
  identity: PublicIdentity;
  /** It was pinned already (else it is pinned once the session is up). */
  pinned: boolean;
}

/**
 * Read the key the server named for `peer` and check it against our pin
 * (PROTOCOL.md section 6, key continuity), before any handshake.
 * @param ctx the client
 * @param peer the partner
 * @param identity the `identity` field of the `grant` or `join` (or of a
 *   mailbox `bundle`, PROTOCOL.md section 9.2)
 * @param refusing what a changed key refuses, for the warning
 * @returns the key and whether it was pinned
 * @throws {ProtocolError} `bad-identity` when it is not base64 of an RSA
 *   SPKI of 2048 to 4096 bits; {@link AuthError} `peer-key-changed` when
 *   another key is pinned for `peer`, naming both fingerprints; a
 *   {@link KeyError} when the pin cannot be read
 */
export async function namedIdentity(
  ctx: ClientContext,
  peer: string,
  identity: string,
  refusing = "refusing the session",
): Promise<NamedIdentity> {
  let named: PublicIdentity;
  try {
    named = await publicIdentityFromDer(
      Uint8Array.fromBase64(identity),
      `${peer}'s key`,
    );
  } catch (e) {
    throw new ProtocolError(
      "bad-identity",
      `The server named no valid key for ${peer} (${
        isImError(e) ? e.message : "not base64"
      })`,
    );
  }
  const pins = pinsOf(ctx);
  const pinned = await pins.load(peer);
  if (pinned && pinned.fingerprint !== named.fingerprint) {
    throw keyChanged(ctx, peer, named, pinned, refusing);
  }
  return { peer, identity: named, pinned: pinned !== undefined };
}

/**
 * `peer-key-changed`, as loud as a server key mismatch (rule 2.2): both
 * fingerprints, and what to do.
 */
function keyChanged(
  ctx: ClientContext,
  peer: string,
  named: PublicIdentity,
  pinned: PublicIdentity,
  refusing = "refusing the session",
): AuthError {
  changedKeys(ctx).set(peer, named);
  const where = pinsOf(ctx).where(peer);
  const todo =
    `if ${peer} really has a new key, compare its fingerprint with ${peer} out of band, then type !trust ${peer} (${
      where === undefined
        ? "this client keeps its pins in memory until it quits"
        : `the pin is ${where}`
    })`;
  return new AuthError(
    "peer-key-changed",
    `WARNING: ${peer}'s key changed: the server names ${named.fingerprint} for ${peer}, but the key pinned for ${peer} is ${pinned.fingerprint}; ${refusing} (someone, most likely the server, may be in the middle). ${todo}`,
    todo,
  );
}

/**
 * Once the partner's signature verified: pin its key if none was pinned,
 * and say so once. A pin that cannot be written is told, and the session
 * goes on unpinned.
 * @param ctx the client
 * @param named the key, from {@link namedIdentity}
 * @param first how the line that says so starts (a mail's: "First
 *   message to B", PROTOCOL.md section 9.2)
 * @param advice what the line ends with: how to be sure of the key
 * @throws {AuthError} `peer-key-changed` when another key was pinned
 *   meanwhile (by another process of the same user)
 */
export async function pinFirstUse(
  ctx: ClientContext,
  named: NamedIdentity,
  first = `First session with ${named.peer}`,
  advice = `compare the code with ${named.peer} to be sure`,
): Promise<void> {
  if (named.pinned) return;
  const { peer, identity } = named;
  let action: PinAction;
  try {
    action = await pinsOf(ctx).pin(peer, identity);
  } catch (e) {
    if (isImError(e) && e.code === "peer-key-changed") {
      const now = await pinsOf(ctx).load(peer).catch(() => undefined);
      throw now ? keyChanged(ctx, peer, identity, now) : e;
    }
    ctx.print({
      kind: "error",
      code: isImError(e) ? e.code : "pin-failed",
      text: `Cannot pin ${peer}'s key ${identity.fingerprint}: ${
        (e as Error).message
      }; going on unpinned`,
    });
    return;
  }
  if (action === "pinned") {
    ctx.system(
      `${first}: ${peer}'s key ${identity.fingerprint} is now pinned; ${advice}`,
    );
  }
}

/** Per client, the last key the server named for a partner that differed from the pin. */
const CHANGED = new WeakMap<ClientContext, Map<string, PublicIdentity>>();

function changedKeys(ctx: ClientContext): Map<string, PublicIdentity> {
  let m = CHANGED.get(ctx);
  if (!m) CHANGED.set(ctx, m = new Map());
  return m;
}

/**
 * Remember a key the server names for `peer` that differs from the pin,
 * without a refusal (`!trust` asked the server, PROTOCOL.md section 9.1):
 * the next `!trust <peer>` pins it, once the user has seen it.
 * @param ctx the client
 * @param peer the partner
 * @param named the key the server names now
 */
export function noteChangedKey(
  ctx: ClientContext,
  peer: string,
  named: PublicIdentity,
): void {
  changedKeys(ctx).set(peer, named);
}

/**
 * @param ctx the client
 * @param peer the partner
 * @returns whether a changed key of `peer` was refused and waits for `!trust`
 */
export function hasChangedKey(ctx: ClientContext, peer: string): boolean {
  return changedKeys(ctx).has(peer);
}

/**
 * `!keys <peer>`: the key pinned for `peer`, where it lives, and a changed
 * key waiting for `!trust` (PROTOCOL.md section 6, key continuity).
 * @param ctx the client
 * @param peer the partner
 * @returns the line to show
 */
export async function describePin(
  ctx: ClientContext,
  peer: string,
): Promise<string> {
  const pins = pinsOf(ctx);
  const pinned = await pins.load(peer);
  const where = pins.where(peer);
  const changed = changedKeys(ctx).get(peer);
  const base = pinned
    ? `${peer}'s pinned key: ${pinned.fingerprint}${
      where === undefined ? " (in memory)" : ` (${where})`
    }`
    : `No key pinned for ${peer} yet: your first session or mail with ${peer} pins it`;
  return changed && changed.fingerprint !== pinned?.fingerprint
    ? `${base}; the server last named ${changed.fingerprint} (refused; !trust ${peer} accepts it)`
    : base;
}

/**
 * `!trust <peer>`: pin the changed key the server last named for `peer`, in
 * place of the old one. Only a key seen in a refusal can be trusted: the
 * user compared that fingerprint out of band, the warning asked them to.
 * @param ctx the client
 * @param peer the partner
 * @returns the line to show
 */
export async function trustChangedKey(
  ctx: ClientContext,
  peer: string,
): Promise<string> {
  const changed = changedKeys(ctx).get(peer);
  if (!changed) {
    return `No changed key was seen for ${peer}: nothing to trust (!keys ${peer} shows the pinned one)`;
  }
  await pinsOf(ctx).replace(peer, changed);
  changedKeys(ctx).delete(peer);
  return `${peer}'s key ${changed.fingerprint} is now pinned in place of the old one`;
}
