/**
 * The login handshake (PROTOCOL.md "Login", requirements section 2) as two
 * explicit state machines with no I/O: each step takes the peer's frame
 * payload and returns the payloads to send. The socket loop lives in
 * `client.ts` and `server.ts`.
 *
 * ```
 * client                                   server
 * CLIENT_HELLO  user, nonce_c, eph_c  -->
 *               <--  SERVER_HELLO  nonce_s, eph_s, server key, sig_s(th)
 * verifyServerSignature (pinned key, rule 2.2)
 * CLIENT_AUTH   sig_c(th)             -->  verifyClientSignature (rule 2.3, 2.4)
 *               <--  SERVER_KEY  OAEP(session key), FINISHED record (2.5, 2.7)
 * deriveKeys, check FINISHED
 * FINISHED record                     -->  check FINISHED: logged in
 * ```
 *
 * @example
 * ```ts ignore
 * const client = new ClientHandshake({ user: "A", identity, pinnedServer });
 * const hello = await client.start();
 * ```
 * @module
 */

import {
  AuthError,
  concat,
  constantTimeEqual,
  type ImError,
  isImError,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import { Steps } from "./steps.ts";
import { FrameKind } from "../wire/mod.ts";
import {
  type ClientHello,
  decodeClientAuth,
  decodeClientHello,
  decodeErrorFrame,
  decodeServerHello,
  decodeServerKey,
  encodeClientAuth,
  encodeClientHello,
  encodeServerHello,
  encodeServerKey,
  ErrorCode,
  NONCE_BYTES,
  PROTOCOL_VERSION,
} from "./login_messages.ts";
import {
  decryptOaep,
  deriveDirectionKeys,
  deriveKey,
  encryptOaep,
  type Ephemeral,
  fingerprint,
  generateEphemeral,
  Label,
  type PrivateIdentity,
  type PublicIdentity,
  sharedSecret,
  signPss,
  transcriptHash,
  verifyPss,
} from "../crypto/mod.ts";
import {
  confirmFinished,
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../record/mod.ts";
import type { TicketKeys } from "./ticket.ts";
import { checkUsername, isValidUsername } from "./username.ts";

/** Bytes of the session key the server makes (rule 2.5). */
export const SESSION_KEY_BYTES = 32;

/** Rule 1.2: how long a login may take, from TCP connect to FINISHED, on either side (default). */
export const LOGIN_TIMEOUT_MS = 10_000;

/** What a finished login gives both sides. */
export interface LoginResult {
  user: string;
  /** Seals our direction (client: c2s, server: s2c). */
  sealer: RecordSealer;
  /** Opens the other direction. */
  opener: RecordOpener;
  /** Keys that seal tickets for this user (rule 4.2). */
  ticketKeys: TicketKeys;
  /** Final transcript hash (identifies the login; never secret). */
  transcript: Uint8Array;
  /**
   * Fingerprint of the key the other side proved it holds: the client's on
   * the server, the (pinned) server's on the client.
   */
  peerFingerprint: string;
}

/** Options shared by both sides. */
export interface HandshakeOptions {
  /** Freshness window of the records, rule 3.5. */
  windowMs?: number;
}

/** Client states, in order. */
export type ClientState =
  | "start"
  | "await-server-hello"
  | "await-server-key"
  | "await-server-finished"
  | "done"
  | "failed";

/** Server states, in order. */
export type ServerState =
  | "await-client-hello"
  | "await-client-auth"
  | "await-client-finished"
  | "done"
  | "failed";

/**
 * The login transcript hash th (rule 2.3): label, version, username, both
 * nonces, the server key fingerprint and both ephemeral keys.
 * @returns 32 bytes
 */
async function loginTranscript(
  hello: ClientHello,
  serverNonce: Uint8Array,
  serverFingerprint: Uint8Array,
  serverEphemeral: Uint8Array,
): Promise<Uint8Array> {
  return await transcriptHash(Label.TRANSCRIPT, [
    new Uint8Array([hello.version]),
    utf8(hello.user),
    hello.nonce,
    serverNonce,
    serverFingerprint,
    hello.ephemeral,
    serverEphemeral,
  ]);
}

/** What a side signs: `label || 0x00 || th`, so the two signatures can never stand for each other. */
function signedContent(label: string, th: Uint8Array): Uint8Array {
  return concat(utf8(label), new Uint8Array([0]), th);
}

async function fingerprintRaw(spki: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(
    await crypto.subtle.digest("SHA-256", spki as Uint8Array<ArrayBuffer>),
  );
}

/** Derive both directions and the ticket keys from session key || X25519 secret, salted with th2 (rules 2.5, 2.6). */
async function deriveLoginKeys(
  sessionKey: Uint8Array,
  dh: Uint8Array,
  th2: Uint8Array,
) {
  const ikm = concat(sessionKey, dh);
  const [c2s, s2c, enc, mac] = await Promise.all([
    deriveDirectionKeys(ikm, th2, "c2s"),
    deriveDirectionKeys(ikm, th2, "s2c"),
    deriveKey(ikm, th2, Label.TICKET_ENC),
    deriveKey(ikm, th2, Label.TICKET_MAC),
  ]);
  wipe(ikm);
  return { c2s, s2c, ticketKeys: { enc, mac } };
}

/**
 * The ERROR frame code a server sends for a login that failed with `e`
 * (PROTOCOL.md "Errors"): the inverse of {@link errorFromFrame}, kept beside
 * it so both directions of the mapping live in one place.
 * @param e what the login failed with
 * @returns the frame's code
 */
export function errorFrameCode(e: unknown): ErrorCode {
  if (!isImError(e)) return ErrorCode.PROTOCOL;
  if (e.code === "version") return ErrorCode.VERSION;
  if (e.code === "bad-username") return ErrorCode.BAD_USERNAME;
  if (e instanceof AuthError) return ErrorCode.AUTH_FAILED;
  return ErrorCode.PROTOCOL;
}

/**
 * Turn a cleartext ERROR frame from the server into a typed error.
 * @param payload an ERROR frame payload
 * @returns the error to throw
 */
export function errorFromFrame(payload: Uint8Array): ImError {
  let code: number, message: string;
  try {
    ({ code, message } = decodeErrorFrame(payload));
  } catch (e) {
    return e as ProtocolError;
  }
  switch (code) {
    case ErrorCode.AUTH_FAILED:
      return new AuthError(
        "login-failed",
        `Server refused the login: ${message}`,
        "check the username and that your private key is the one enrolled on the server",
      );
    case ErrorCode.RATE_LIMITED:
      return new AuthError(
        "rate-limited",
        `Server refused the login: ${message}`,
        "wait and try again",
      );
    case ErrorCode.BAD_USERNAME:
      return new AuthError(
        "bad-username",
        `Server refused the login: ${message}`,
      );
    case ErrorCode.TOO_MANY:
      return new ProtocolError(
        "server-busy",
        `Server is busy: ${message}`,
        "try again in a moment",
      );
    case ErrorCode.SHUTDOWN:
      return new ProtocolError(
        "server-shutdown",
        `Server is shutting down: ${message}`,
      );
    case ErrorCode.TIMEOUT:
      return new ProtocolError(
        "login-timeout",
        `Server closed the login: ${message}`,
      );
    case ErrorCode.VERSION:
      return new ProtocolError(
        "version",
        `Server refused the protocol version: ${message}`,
      );
    default:
      return new ProtocolError(
        "server-error",
        `Server reported an error: ${message}`,
      );
  }
}

/** Throw the server's ERROR frame as a typed error, or check the frame kind. */
function expectKind(payload: Uint8Array, kind: number, what: string): void {
  if (payload[0] === FrameKind.ERROR) throw errorFromFrame(payload);
  if (payload[0] !== kind) {
    throw new ProtocolError(
      "unexpected-frame",
      `Expected ${what}, got frame kind ${payload[0]}`,
    );
  }
}

/** Options of {@link ClientHandshake}. */
export interface ClientHandshakeOptions extends HandshakeOptions {
  user: string;
  identity: PrivateIdentity;
  /** The server public key that keygen provisioned (rule 2.2). */
  pinnedServer: PublicIdentity;
}

/** The client side of the login. */
export class ClientHandshake {
  #steps = new Steps<Exclude<ClientState, "failed">>("start", "Login");
  #opts: ClientHandshakeOptions;
  #hello: ClientHello | undefined;
  #eph: Ephemeral | undefined;
  #th: Uint8Array | undefined;
  #signature: Uint8Array | undefined;
  #serverEphemeral: Uint8Array | undefined;
  #th2: Uint8Array | undefined;
  #result: LoginResult | undefined;

  /** @param opts who we are and which server key we trust */
  constructor(opts: ClientHandshakeOptions) {
    this.#opts = opts;
  }

  /** Current state. */
  get state(): ClientState {
    return this.#steps.state;
  }

  #step<T>(
    expected: Exclude<ClientState, "failed">,
    fn: () => Promise<T> | T,
  ): Promise<T> {
    return this.#steps.run(expected, async () => await fn());
  }

  /**
   * sendClientHello: fresh nonce and ephemeral key (rule 2.1).
   * @returns CLIENT_HELLO payload
   * @throws {AuthError} `bad-username` when the username breaks rule 2.9
   */
  start(): Promise<Uint8Array> {
    return this.#step("start", async () => {
      checkUsername(this.#opts.user); // rule 2.9: refuse before anything is sent
      this.#eph = await generateEphemeral();
      this.#hello = {
        version: PROTOCOL_VERSION,
        user: this.#opts.user,
        nonce: randomBytes(NONCE_BYTES),
        ephemeral: this.#eph.publicRaw,
      };
      this.#steps.state = "await-server-hello";
      return encodeClientHello(this.#hello);
    });
  }

  /**
   * readServerHello, verifyServerSignature (rule 2.2), sendClientAuth (2.3).
   * Nothing is signed until the server proved it holds the pinned key.
   * @param payload SERVER_HELLO (or ERROR)
   * @returns CLIENT_AUTH payload
   * @throws {AuthError} `server-key-mismatch` naming both fingerprints, or `bad-server-signature`
   */
  onServerHello(payload: Uint8Array): Promise<Uint8Array> {
    return this.#step("await-server-hello", async () => {
      expectKind(payload, FrameKind.SERVER_HELLO, "SERVER_HELLO");
      const m = decodeServerHello(payload);
      if (m.version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          "version",
          `Server speaks protocol version ${m.version}, we speak ${PROTOCOL_VERSION}`,
        );
      }
      const pinned = this.#opts.pinnedServer;
      const offeredFp = await fingerprintRaw(m.serverPublicKey);
      if (!constantTimeEqual(offeredFp, pinned.fingerprintBytes)) {
        const offered = await fingerprint(m.serverPublicKey);
        throw new AuthError(
          "server-key-mismatch",
          `WARNING: server key mismatch: the server presented ${offered}, but the pinned key is ${pinned.fingerprint}; refusing to log in (someone may be impersonating the server)`,
          "if the server key really changed, get its public key from the operator and pin it",
        );
      }
      const th = await loginTranscript(
        this.#hello!,
        m.nonce,
        pinned.fingerprintBytes,
        m.ephemeral,
      );
      const ok = await verifyPss(
        pinned.verify,
        m.signature,
        signedContent(Label.SERVER_SIGNATURE, th),
      );
      if (!ok) {
        throw new AuthError(
          "bad-server-signature",
          `Server signature does not verify with the pinned key ${pinned.fingerprint}; refusing to log in`,
        );
      }
      this.#th = th;
      this.#signature = await signPss(
        this.#opts.identity.sign,
        signedContent(Label.CLIENT_SIGNATURE, th),
      );
      this.#serverEphemeral = m.ephemeral;
      this.#steps.state = "await-server-key";
      return encodeClientAuth({ signature: this.#signature });
    });
  }

  /**
   * readServerKey, deriveKeys (rules 2.5, 2.6).
   * @param payload SERVER_KEY (or ERROR)
   * @throws {AuthError} `login-failed` when the server refused us; `bad-session-key` when OAEP fails
   */
  onServerKey(payload: Uint8Array): Promise<void> {
    return this.#step("await-server-key", async () => {
      expectKind(payload, FrameKind.SERVER_KEY, "SERVER_KEY");
      const { sealedSessionKey } = decodeServerKey(payload);
      const sessionKey = await decryptOaep(
        this.#opts.identity.decrypt,
        sealedSessionKey,
        utf8(Label.SESSION_KEY),
      );
      if (sessionKey.length !== SESSION_KEY_BYTES) {
        throw new AuthError(
          "bad-session-key",
          "Session key from the server has the wrong length",
        );
      }
      const dh = await sharedSecret(this.#eph!, this.#serverEphemeral!);
      const th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [
        this.#th!,
        this.#signature!,
        sealedSessionKey,
      ]);
      const keys = await deriveLoginKeys(sessionKey, dh, th2);
      wipe(sessionKey, dh);
      this.#th2 = th2;
      const sealer = new RecordSealer(keys.c2s);
      const opener = new RecordOpener(keys.s2c, this.#windowOpts());
      wipe(
        keys.c2s.enc,
        keys.c2s.iv,
        keys.c2s.mac,
        keys.s2c.enc,
        keys.s2c.iv,
        keys.s2c.mac,
      );
      this.#result = {
        user: this.#opts.user,
        sealer,
        opener,
        ticketKeys: keys.ticketKeys,
        transcript: th2,
        peerFingerprint: this.#opts.pinnedServer.fingerprint,
      };
      this.#steps.state = "await-server-finished";
    });
  }

  #windowOpts() {
    return this.#opts.windowMs === undefined
      ? {}
      : { windowMs: this.#opts.windowMs };
  }

  /**
   * Check the server's FINISHED (rule 2.7) and make ours.
   * @param payload the server's first record
   * @returns our FINISHED record payload; the login is done
   * @throws {AuthError} `key-confirmation-failed`
   */
  onServerFinished(payload: Uint8Array): Promise<Uint8Array> {
    return this.#step("await-server-finished", () => {
      expectKind(payload, FrameKind.RECORD, "FINISHED record");
      const r = this.#result!;
      if (!confirmFinished(r.opener, payload, this.#th2!)) {
        throw new AuthError(
          "key-confirmation-failed",
          "Server could not prove it holds the session keys",
        );
      }
      this.#steps.state = "done";
      return r.sealer.seal(RecordType.FINISHED, this.#th2!);
    });
  }

  /**
   * The keys, once {@link state} is `done`.
   * @returns the login result
   */
  get result(): LoginResult {
    if (this.#steps.state !== "done") {
      throw new ProtocolError("not-logged-in", "Login is not finished");
    }
    return this.#result!;
  }
}

/** Options of {@link ServerHandshake}. */
export interface ServerHandshakeOptions extends HandshakeOptions {
  identity: PrivateIdentity;
  /** The server's directory of client public keys. */
  lookupUser: (name: string) => PublicIdentity | undefined;
  /**
   * A key nobody can sign for (the server's own public key does): an unknown
   * user's signature is checked against it, so the answer and its timing
   * match a bad signature (rule 2.4).
   */
  decoy: PublicIdentity;
}

/** The server side of the login. */
export class ServerHandshake {
  #steps = new Steps<Exclude<ServerState, "failed">>(
    "await-client-hello",
    "Login",
  );
  #opts: ServerHandshakeOptions;
  #hello: ClientHello | undefined;
  #eph: Ephemeral | undefined;
  #th: Uint8Array | undefined;
  #th2: Uint8Array | undefined;
  #result: LoginResult | undefined;

  /** @param opts server key and client directory */
  constructor(opts: ServerHandshakeOptions) {
    this.#opts = opts;
  }

  /** Current state. */
  get state(): ServerState {
    return this.#steps.state;
  }

  /** The username the client claimed (after CLIENT_HELLO; proven only when `done`). */
  get claimedUser(): string | undefined {
    return this.#hello?.user;
  }

  #step<T>(
    expected: Exclude<ServerState, "failed">,
    fn: () => Promise<T> | T,
  ): Promise<T> {
    return this.#steps.run(expected, async () => await fn());
  }

  /**
   * readClientHello, sendServerHello: fresh nonce and ephemeral key (2.1), signed transcript (2.2).
   * @param payload CLIENT_HELLO
   * @returns SERVER_HELLO payload
   * @throws {ProtocolError} `version` or `bad-username` (rule 2.9), or malformed input
   */
  onClientHello(payload: Uint8Array): Promise<Uint8Array> {
    return this.#step("await-client-hello", async () => {
      const hello = decodeClientHello(payload);
      if (hello.version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          "version",
          `Unsupported protocol version ${hello.version}; this server speaks ${PROTOCOL_VERSION}`,
        );
      }
      if (!isValidUsername(hello.user)) {
        throw new ProtocolError(
          "bad-username",
          "Invalid username: expected 1-32 characters of A-Z a-z 0-9 _ -",
        );
      }
      this.#hello = hello;
      this.#eph = await generateEphemeral();
      const nonce = randomBytes(NONCE_BYTES);
      const id = this.#opts.identity;
      this.#th = await loginTranscript(
        hello,
        nonce,
        id.fingerprintBytes,
        this.#eph.publicRaw,
      );
      const signature = await signPss(
        id.sign,
        signedContent(Label.SERVER_SIGNATURE, this.#th),
      );
      this.#steps.state = "await-client-auth";
      return encodeServerHello({
        version: PROTOCOL_VERSION,
        nonce,
        ephemeral: this.#eph.publicRaw,
        serverPublicKey: id.publicDer,
        signature,
      });
    });
  }

  /**
   * verifyClientSignature (2.3, 2.4), sendServerKey (2.5), sendFinished (2.7).
   * @param payload CLIENT_AUTH
   * @returns SERVER_KEY and FINISHED record payloads, to send in that order
   * @throws {AuthError} `login-failed`, the same for an unknown user and a bad signature
   */
  onClientAuth(payload: Uint8Array): Promise<Uint8Array[]> {
    return this.#step("await-client-auth", async () => {
      const { signature } = decodeClientAuth(payload);
      const known = this.#opts.lookupUser(this.#hello!.user);
      const key = known ?? this.#opts.decoy;
      const ok = await verifyPss(
        key.verify,
        signature,
        signedContent(Label.CLIENT_SIGNATURE, this.#th!),
      );
      if (!ok || !known) {
        throw new AuthError(
          "login-failed",
          "Login refused: unknown user or wrong key",
        );
      }
      const sessionKey = randomBytes(SESSION_KEY_BYTES);
      const sealed = await encryptOaep(
        known.encrypt,
        sessionKey,
        utf8(Label.SESSION_KEY),
      );
      const dh = await sharedSecret(this.#eph!, this.#hello!.ephemeral);
      const th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [
        this.#th!,
        signature,
        sealed,
      ]);
      const keys = await deriveLoginKeys(sessionKey, dh, th2);
      wipe(sessionKey, dh);
      this.#th2 = th2;
      const sealer = new RecordSealer(keys.s2c);
      const opener = new RecordOpener(
        keys.c2s,
        this.#opts.windowMs === undefined
          ? {}
          : { windowMs: this.#opts.windowMs },
      );
      wipe(
        keys.c2s.enc,
        keys.c2s.iv,
        keys.c2s.mac,
        keys.s2c.enc,
        keys.s2c.iv,
        keys.s2c.mac,
      );
      this.#result = {
        user: this.#hello!.user,
        sealer,
        opener,
        ticketKeys: keys.ticketKeys,
        transcript: th2,
        peerFingerprint: known.fingerprint,
      };
      this.#steps.state = "await-client-finished";
      return [
        encodeServerKey({ sealedSessionKey: sealed }),
        sealer.seal(RecordType.FINISHED, th2),
      ];
    });
  }

  /**
   * Check the client's FINISHED (rule 2.7): only now is the user logged in.
   * @param payload the client's first record
   * @throws {AuthError} `key-confirmation-failed`
   */
  onClientFinished(payload: Uint8Array): Promise<void> {
    return this.#step("await-client-finished", () => {
      if (!confirmFinished(this.#result!.opener, payload, this.#th2!)) {
        throw new AuthError(
          "key-confirmation-failed",
          "Client could not prove it holds the session keys",
        );
      }
      this.#steps.state = "done";
    });
  }

  /**
   * The keys, once {@link state} is `done`.
   * @returns the login result
   */
  get result(): LoginResult {
    if (this.#steps.state !== "done") {
      throw new ProtocolError("not-logged-in", "Login is not finished");
    }
    return this.#result!;
  }
}
