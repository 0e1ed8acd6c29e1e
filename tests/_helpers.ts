/**
 * Shared fixtures for the protocol tests. Keep this file small: it is the
 * whole vocabulary other tests may rely on.
 *
 * - {@link identities}: 2048-bit RSA identities for the server and users
 *   A, B, C, generated once per process (about 0.3 s) and cached;
 *   {@link userIdentity}, {@link clientDirectory} and {@link directory}
 *   pick from them.
 * - {@link handshakePair}: a fresh client and server handshake for one user,
 *   to drive step by step.
 * - {@link loginInMemory}: a whole login with no sockets.
 * - {@link peerSetup}, {@link peerInMemory}: a ticket sealed by the
 *   "server" and a whole peer handshake between two logged-in users
 *   (PEER_COMMIT, PEER_HELLO, PEER_REPLY, FINISHED both ways, each signed
 *   with its user's key and checked with the key the "server" named).
 * - {@link seededRandom}, {@link flipBit}: deterministic fuzz input.
 * - {@link captureEphemerals}, {@link x25519}: see the X25519 private keys a
 *   handshake generates, to recompute its key schedule from the outside.
 * - {@link assertThrowsIm}, {@link assertRejectsIm}: assert a typed error
 *   (class and stable code), and return it for further checks.
 * - {@link freePort}: a TCP port on 127.0.0.1 that nothing listens on.
 *
 * @example
 * ```ts ignore
 * import { loginInMemory } from "./_helpers.ts";
 * const { client, server } = await loginInMemory("A");
 * const rec = client.sealer.seal(RecordType.DATA, utf8("hi"));
 * server.opener.open(rec);
 * ```
 * @module
 */

import assert from "node:assert/strict";
import { type ImError, randomBytes } from "../lib/util/mod.ts";
import {
  ClientHandshake,
  type JoinTicket,
  type LoginResult,
  openJoinTicket,
  PeerHostHandshake,
  PeerJoinHandshake,
  type PeerResult,
  sealTicket,
  ServerHandshake,
  TicketReplayCache,
} from "../lib/proto/mod.ts";
import {
  generateRsaKeyPair,
  loadPrivateIdentity,
  loadPublicIdentity,
  type PrivateIdentity,
  type PublicIdentity,
} from "../lib/crypto/mod.ts";

/** The cached identities: the server's and those of users A, B and C. */
export interface Identities {
  /** The server's private identity. */
  server: PrivateIdentity;
  /** The server's public key as a client pins it (loaded from PEM). */
  serverPinned: PublicIdentity;
  /** A second server key, for "pinned to a different key" tests. */
  otherServer: PrivateIdentity;
  A: PrivateIdentity;
  B: PrivateIdentity;
  C: PrivateIdentity;
  /** An identity the server does not know (not in {@link directory}). */
  stranger: PrivateIdentity;
}

let cached: Promise<Identities> | undefined;

async function makeIdentity(name: string): Promise<{
  priv: PrivateIdentity;
  pub: PublicIdentity;
}> {
  const pem = await generateRsaKeyPair(2048);
  const [priv, pub] = await Promise.all([
    loadPrivateIdentity(pem.privatePem, `${name} private key`),
    loadPublicIdentity(pem.publicPem, `${name} public key`),
  ]);
  return { priv, pub };
}

/**
 * 2048-bit identities, generated on the first call and shared by every test
 * of the process.
 * @returns the identities
 */
export function identities(): Promise<Identities> {
  cached ??= (async () => {
    const [s, o, a, b, c, x] = await Promise.all(
      ["server", "other", "A", "B", "C", "stranger"].map(makeIdentity),
    );
    return {
      server: s!.priv,
      serverPinned: s!.pub,
      otherServer: o!.priv,
      A: a!.priv,
      B: b!.priv,
      C: c!.priv,
      stranger: x!.priv,
    };
  })();
  return cached;
}

/**
 * The private identity of user `user`: A's, B's or C's own, the stranger's
 * for any other name.
 * @param ids the identities
 * @param user the username
 * @returns the identity that user signs with
 */
export function userIdentity(ids: Identities, user: string): PrivateIdentity {
  const own =
    (ids as unknown as Record<string, PrivateIdentity | undefined>)[user];
  return own ?? ids.stranger;
}

/**
 * The users a server knows: A, B and C, plus extra users sharing keys.
 * @param ids the identities
 * @param extra more users and their identities
 * @returns username to public identity, as a server's `clients` option
 */
export function clientDirectory(
  ids: Identities,
  extra: Record<string, PrivateIdentity> = {},
): Map<string, PublicIdentity> {
  const m = new Map<string, PublicIdentity>([
    ["A", ids.A.publicIdentity],
    ["B", ids.B.publicIdentity],
    ["C", ids.C.publicIdentity],
  ]);
  for (const [name, id] of Object.entries(extra)) {
    m.set(name, id.publicIdentity);
  }
  return m;
}

/**
 * The server's user directory: A, B and C, nobody else.
 * @param ids the identities
 * @returns a `lookupUser` for {@link ServerHandshake}
 */
export function directory(
  ids: Identities,
): (name: string) => PublicIdentity | undefined {
  const users = clientDirectory(ids);
  return (name) => users.get(name);
}

/** Options of {@link handshakePair} and {@link loginInMemory}. */
export interface PairOptions {
  /** The key the client signs with (default: the user's own). */
  identity?: PrivateIdentity;
  /** The server key the client pins (default: the real server's). */
  pinned?: PublicIdentity;
  /** Record freshness window of both sides. */
  windowMs?: number;
  /** The server's directory (default {@link directory}). */
  lookupUser?: (name: string) => PublicIdentity | undefined;
}

/**
 * A fresh client and server handshake for `user`, not started.
 * @param user the username the client claims
 * @param opts overrides
 * @returns both state machines and the identities
 */
export async function handshakePair(
  user: string,
  opts: PairOptions = {},
): Promise<
  { client: ClientHandshake; server: ServerHandshake; ids: Identities }
> {
  const ids = await identities();
  const identity = opts.identity ?? userIdentity(ids, user);
  const window = opts.windowMs === undefined ? {} : { windowMs: opts.windowMs };
  const client = new ClientHandshake({
    user,
    identity,
    pinnedServer: opts.pinned ?? ids.serverPinned,
    ...window,
  });
  const server = new ServerHandshake({
    identity: ids.server,
    lookupUser: opts.lookupUser ?? directory(ids),
    decoy: ids.server.publicIdentity,
    ...window,
  });
  return { client, server, ids };
}

/** Both ends of a finished login. */
export interface LoginPair {
  /** The client's keys: seals c2s, opens s2c. */
  client: LoginResult;
  /** The server's keys for this user: seals s2c, opens c2s. */
  server: LoginResult;
}

/**
 * Run a whole login in memory (no sockets).
 * @param user "A", "B" or "C" (or any name, with `opts.identity`)
 * @param opts overrides
 * @returns both results
 * @throws whatever the handshake throws
 */
export async function loginInMemory(
  user: string,
  opts: PairOptions = {},
): Promise<LoginPair> {
  const { client, server } = await handshakePair(user, opts);
  const serverHello = await server.onClientHello(await client.start());
  const auth = await client.onServerHello(serverHello);
  const [key, fin] = await server.onClientAuth(auth);
  await client.onServerKey(key!);
  await server.onClientFinished(await client.onServerFinished(fin!));
  return { client: client.result, server: server.result };
}

/** Everything a peer session test needs. */
export interface PeerSetup {
  host: PeerHostHandshake;
  join: PeerJoinHandshake;
  /** The key the host signs with. */
  hostIdentity: PrivateIdentity;
  /** The key the joiner signs with. */
  joinerIdentity: PrivateIdentity;
  peerKey: Uint8Array;
  ticketId: Uint8Array;
  ticket: Uint8Array;
  /** The ticket as the joiner opened it from its `join`. */
  joinTicket: JoinTicket;
  /** The joiner's replay cache. */
  cache: TicketReplayCache;
  /** Ticket expiry (ms since the epoch). */
  expiresAt: number;
}

/** Options of {@link peerSetup}: who signs, and which keys the "server" names. */
export interface PeerSetupOptions {
  /** The key the host signs with (default: the host's own, {@link userIdentity}). */
  hostIdentity?: PrivateIdentity;
  /** The key the joiner signs with (default: the joiner's own). */
  joinerIdentity?: PrivateIdentity;
  /** The key the `join` names for the host (default: the host's own). */
  hostNamed?: PublicIdentity;
  /** The key the `grant` names for the joiner (default: the joiner's own). */
  joinerNamed?: PublicIdentity;
}

/**
 * Seal a ticket for `joiner` as the server does (with the joiner's
 * server-side ticket keys) and set up both peer handshakes, not started.
 * @param hostName the host's username
 * @param joiner the joiner's login
 * @param joinerName the joiner's username
 * @param o who signs, and the keys the "server" names
 * @returns the two handshakes and the grant
 */
export async function peerSetup(
  hostName: string,
  joiner: LoginPair,
  joinerName: string,
  o: PeerSetupOptions = {},
): Promise<PeerSetup> {
  const ids = await identities();
  const hostIdentity = o.hostIdentity ?? userIdentity(ids, hostName);
  const joinerIdentity = o.joinerIdentity ?? userIdentity(ids, joinerName);
  const peerKey = randomBytes(32);
  const ticketId = randomBytes(16);
  const expiresAt = Date.now() + 30_000;
  const ticket = sealTicket(joiner.server.ticketKeys, {
    id: ticketId,
    host: hostName,
    joiner: joinerName,
    expiresAt,
    peerKey,
  });
  const cache = new TicketReplayCache();
  const host = new PeerHostHandshake({
    self: hostName,
    joiner: joinerName,
    peerKey,
    ticket,
    ticketId,
    identity: hostIdentity,
    peerIdentity: o.joinerNamed ??
      userIdentity(ids, joinerName).publicIdentity,
  });
  const join = new PeerJoinHandshake({
    self: joinerName,
    expectedHost: hostName,
    replayCache: cache,
    identity: joinerIdentity,
    peerIdentity: o.hostNamed ?? userIdentity(ids, hostName).publicIdentity,
  });
  const joinTicket = openJoinTicket(joiner.client.ticketKeys, ticket, {
    self: joinerName,
    expectedHost: hostName,
    ticketId,
  });
  return {
    host,
    join,
    hostIdentity,
    joinerIdentity,
    peerKey,
    ticketId,
    ticket,
    joinTicket,
    cache,
    expiresAt,
  };
}

/**
 * Drive a whole peer handshake set up by {@link peerSetup}: the joiner
 * commits, the host says hello, the joiner reveals, both confirm keys.
 * @param s the setup
 * @returns the host's and the joiner's results
 */
export async function peerInMemory(
  s: PeerSetup,
): Promise<{ host: PeerResult; joiner: PeerResult }> {
  await s.host.onCommit(await s.join.commit(s.joinTicket));
  const reply = await s.join.onHello(await s.host.hello());
  const hostFin = await s.host.onReply(reply);
  await s.host.onFinished(await s.join.onFinished(hostFin));
  return { host: s.host.result, joiner: s.join.result };
}

/**
 * A seeded pseudo-random byte source (mulberry32), for reproducible fuzzing.
 * Not for keys.
 * @param seed any 32-bit integer
 * @returns `bytes(n)` giving n bytes, and `int(n)` giving 0..n-1
 */
export function seededRandom(
  seed: number,
): { bytes(n: number): Uint8Array<ArrayBuffer>; int(n: number): number } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return {
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = next() & 0xff;
      return out;
    },
    int(n) {
      return next() % n;
    },
  };
}

/**
 * A copy of `b` with one bit flipped.
 * @param b the bytes
 * @param bit bit index, 0 = lowest bit of byte 0
 * @returns the altered copy
 */
export function flipBit(b: Uint8Array, bit: number): Uint8Array<ArrayBuffer> {
  const x = new Uint8Array(b);
  x[bit >> 3] = x[bit >> 3]! ^ (1 << (bit & 7));
  return x;
}

/**
 * Run `fn` and capture the X25519 key pairs it generates, by wrapping
 * `crypto.subtle.generateKey` while it runs (restored before returning).
 * Do not run other handshakes concurrently with `fn`.
 * @param fn the call, e.g. `() => client.start()`
 * @returns what `fn` returned and the pairs, in order of generation
 */
export async function captureEphemerals<T>(
  fn: () => Promise<T>,
): Promise<{ value: T; pairs: CryptoKeyPair[] }> {
  const subtle = crypto.subtle as { generateKey: SubtleCrypto["generateKey"] };
  const original = subtle.generateKey;
  const pairs: CryptoKeyPair[] = [];
  subtle.generateKey = async function (this: SubtleCrypto, ...args: unknown[]) {
    // deno-lint-ignore no-explicit-any
    const out = await (original as any).apply(this, args);
    const alg = args[0] as { name?: string };
    if (alg.name === "X25519") pairs.push(out as CryptoKeyPair);
    return out;
  } as SubtleCrypto["generateKey"];
  try {
    return { value: await fn(), pairs };
  } finally {
    subtle.generateKey = original;
  }
}

/**
 * X25519 through WebCrypto, for recomputing a shared secret in a test.
 * @param privateKey a captured private key
 * @param publicRaw the other side's 32-byte public key
 * @returns the 32-byte shared secret
 */
export async function x25519(
  privateKey: CryptoKey,
  publicRaw: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const pub = await crypto.subtle.importKey(
    "raw",
    publicRaw as Uint8Array<ArrayBuffer>,
    { name: "X25519" },
    false,
    [],
  );
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "X25519", public: pub },
      privateKey,
      256,
    ),
  );
}

/** Constructor of one of the {@link ImError} classes. */
// deno-lint-ignore no-explicit-any
export type ImErrorClass<E extends ImError> = new (...args: any[]) => E;

function checkIm<E extends ImError>(
  e: unknown,
  cls: ImErrorClass<E>,
  code: string | undefined,
  what: string,
): E {
  assert.ok(
    e instanceof cls,
    `${what}: expected ${cls.name}, got ${
      e instanceof Error ? `${e.name}: ${e.message}` : String(e)
    }`,
  );
  if (code !== undefined) {
    assert.equal((e as E).code, code, `${what}: code`);
  }
  return e as E;
}

/**
 * Assert that `fn` throws an instance of `cls` with `code`.
 * @param fn the call
 * @param cls the expected class (subclass of {@link ImError})
 * @param code the expected stable code, or undefined for any
 * @param what context for the failure message
 * @returns the error
 */
export function assertThrowsIm<E extends ImError>(
  fn: () => unknown,
  cls: ImErrorClass<E>,
  code?: string,
  what = "call",
): E {
  try {
    fn();
  } catch (e) {
    return checkIm(e, cls, code, what);
  }
  assert.fail(`${what}: expected ${cls.name} ${code ?? ""}, nothing thrown`);
}

/**
 * Assert that `fn` rejects (or throws) with an instance of `cls` with `code`.
 * @param fn the async call
 * @param cls the expected class
 * @param code the expected stable code, or undefined for any
 * @param what context for the failure message
 * @returns the error
 */
export async function assertRejectsIm<E extends ImError>(
  fn: () => Promise<unknown>,
  cls: ImErrorClass<E>,
  code?: string,
  what = "call",
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return checkIm(e, cls, code, what);
  }
  assert.fail(`${what}: expected ${cls.name} ${code ?? ""}, nothing thrown`);
}

/**
 * A free TCP port on 127.0.0.1 (listen on 0, close, return it).
 * @returns the port
 */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
