/**
 * The client side of the login (PROTOCOL.md section 3, "Client states"):
 * {@link ClientHandshake} checks the server's key against the pinned one
 * before it signs anything (rule 2.2), signs the transcript (2.3), opens the
 * session key (2.5), derives the keys (2.6) and checks FINISHED (2.7). Shared
 * pieces live in `login.ts` and `_login.ts`.
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
  constantTimeEqual,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import { FrameKind } from "../wire/mod.ts";
import {
  decryptOaep,
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
  describeClockSkew,
  RecordType,
  verifyFinished,
} from "../record/mod.ts";
import {
  type ClientHello,
  decodeServerHello,
  decodeServerKey,
  encodeClientAuth,
  encodeClientHello,
  NONCE_BYTES,
  PROTOCOL_VERSION,
} from "./login_messages.ts";
import {
  errorFromFrame,
  type HandshakeOptions,
  type LoginResult,
  SESSION_KEY_BYTES,
} from "./login.ts";
import {
  checkServerKeyTag,
  loginKeys,
  loginTranscript,
  signedContent,
} from "./_login.ts";
import { Steps } from "./steps.ts";
import { checkUsername } from "./username.ts";

/** Client states, in order. */
export type ClientState =
  | "start"
  | "await-server-hello"
  | "await-server-key"
  | "await-server-finished"
  | "done"
  | "failed";

async function fingerprintRaw(spki: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(
    await crypto.subtle.digest("SHA-256", spki as Uint8Array<ArrayBuffer>),
  );
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
  #steps = new Steps<Exclude<ClientState, "failed">>(
    "start",
    "Login",
    () => this.#wipeKeys(),
  );
  #opts: ClientHandshakeOptions;
  #hello: ClientHello | undefined;
  #eph: Ephemeral | undefined;
  #th: Uint8Array | undefined;
  #signature: Uint8Array | undefined;
  #serverEphemeral: Uint8Array | undefined;
  #th2: Uint8Array | undefined;
  #result: LoginResult | undefined;

  /** The first failure: the keys derived so far go (PROTOCOL.md section 4, "Wiping"). */
  #wipeKeys(): void {
    const r = this.#result;
    if (!r) return;
    r.sealer.wipe();
    r.opener.wipe();
    wipe(r.ticketKeys.enc, r.ticketKeys.mac);
  }

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
        m.version,
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
      const { sealedSessionKey, tag } = decodeServerKey(payload);
      // Section 3: the tag first, so no ciphertext anyone else chose ever
      // reaches our RSA decryption (the key also signs).
      const dh = await sharedSecret(this.#eph!, this.#serverEphemeral!);
      if (!(await checkServerKeyTag(dh, this.#th!, sealedSessionKey, tag))) {
        wipe(dh);
        throw new AuthError(
          "bad-session-key",
          "Session key from the server failed its check: it was not sealed by the server of this login",
        );
      }
      let sessionKey: Uint8Array;
      try {
        sessionKey = await decryptOaep(
          this.#opts.identity.decrypt,
          sealedSessionKey,
          utf8(Label.SESSION_KEY),
        );
      } catch (e) {
        wipe(dh);
        throw e;
      }
      if (sessionKey.length !== SESSION_KEY_BYTES) {
        wipe(sessionKey, dh);
        throw new AuthError(
          "bad-session-key",
          "Session key from the server has the wrong length",
        );
      }
      const th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [
        this.#th!,
        this.#signature!,
        sealedSessionKey,
      ]);
      const keys = await loginKeys(
        sessionKey,
        dh,
        th2,
        "client",
        this.#opts.windowMs,
      );
      this.#th2 = th2;
      this.#result = {
        user: this.#opts.user,
        sealer: keys.sealer,
        opener: keys.opener,
        ticketKeys: keys.ticketKeys,
        transcript: th2,
        peerFingerprint: this.#opts.pinnedServer.fingerprint,
      };
      this.#steps.state = "await-server-finished";
    });
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
      const now = this.#opts.now?.() ?? Date.now();
      const v = verifyFinished(r.opener, payload, this.#th2!, now);
      if (!v.ok) {
        // An authentic FINISHED outside the window: the clocks are the
        // trouble, and the user is told so (PROTOCOL.md section 4).
        if (v.clockOffsetMs !== undefined) {
          throw new AuthError(
            "clock-skew",
            describeClockSkew(
              "the server's",
              v.clockOffsetMs,
              v.windowMs ?? 0,
            ),
          );
        }
        throw new AuthError(
          "key-confirmation-failed",
          "Server could not prove it holds the session keys",
        );
      }
      this.#steps.state = "done";
      return r.sealer.seal(RecordType.FINISHED, this.#th2!, now);
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
