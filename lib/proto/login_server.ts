/**
 * The server side of the login (PROTOCOL.md section 3, "Server states"):
 * {@link ServerHandshake} signs SERVER_HELLO for anyone (2.2), checks the
 * client's signature against the enrolled key or a decoy of the same size
 * (2.3, 2.4; `login_decoys.ts`), seals
 * the session key (2.5), derives the keys (2.6) and checks FINISHED (2.7).
 * Shared pieces live in `login.ts` and `_login.ts`.
 *
 * @example
 * ```ts ignore
 * const decoys = new LoginDecoys(directory.values());
 * const server = new ServerHandshake({ identity, lookupUser, decoy: decoys });
 * const serverHello = await server.onClientHello(clientHello);
 * ```
 * @module
 */

import {
  AuthError,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import {
  encryptOaep,
  type Ephemeral,
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
  decodeClientAuth,
  decodeClientHello,
  encodeServerHello,
  encodeServerKey,
  NONCE_BYTES,
  PROTOCOL_VERSION,
} from "./login_messages.ts";
import {
  type HandshakeOptions,
  type LoginResult,
  SESSION_KEY_BYTES,
} from "./login.ts";
import {
  loginKeys,
  loginTranscript,
  serverKeyTag,
  signedContent,
} from "./_login.ts";
import type { DecoySource } from "./login_decoys.ts";
import { Steps } from "./steps.ts";
import { isValidUsername } from "./username.ts";

/** Server states, in order. */
export type ServerState =
  | "await-client-hello"
  | "await-client-auth"
  | "await-client-finished"
  | "done"
  | "failed";

/** Options of {@link ServerHandshake}. */
export interface ServerHandshakeOptions extends HandshakeOptions {
  identity: PrivateIdentity;
  /** The server's directory of client public keys. */
  lookupUser: (name: string) => PublicIdentity | undefined;
  /**
   * What an unknown user's signature is checked against, so that the answer
   * and the work before it match a bad signature (rule 2.4): a
   * `LoginDecoys` shaped like the enrolled keys. A lone key (the
   * server's own, as before) is still taken, but does the same work only
   * when it has the enrolled keys' size: a server passes its LoginDecoys.
   */
  decoy: DecoySource | PublicIdentity;
  /**
   * What signs the transcript (2.2) with `identity`'s private key: a
   * server's `SignPool` (issue 15). Default: {@link signPss} with
   * `identity.sign` on this thread.
   */
  sign?: (data: Uint8Array) => Promise<Uint8Array>;
}

/** The server side of the login. */
export class ServerHandshake {
  #steps = new Steps<Exclude<ServerState, "failed">>(
    "await-client-hello",
    "Login",
    () => this.#wipeKeys(),
  );
  #opts: ServerHandshakeOptions;
  #decoys: DecoySource;
  #hello: ClientHello | undefined;
  #eph: Ephemeral | undefined;
  #th: Uint8Array | undefined;
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

  /** @param opts server key and client directory */
  constructor(opts: ServerHandshakeOptions) {
    this.#opts = opts;
    const decoy = opts.decoy;
    this.#decoys = "decoyFor" in decoy
      ? decoy
      : { decoyFor: () => Promise.resolve(decoy) };
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
        PROTOCOL_VERSION,
        nonce,
        id.fingerprintBytes,
        this.#eph.publicRaw,
      );
      const content = signedContent(Label.SERVER_SIGNATURE, this.#th);
      const signature = this.#opts.sign
        ? await this.#opts.sign(content)
        : await signPss(id.sign, content);
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
   *
   * Every refusal takes the same steps in the same order, whether the name
   * is unknown, the signature garbage or made with another key: look the
   * user up, await the name's decoy, one RSA-PSS verification (with the
   * user's key, else the decoy, of a size enrolled keys have), one answer.
   * @param payload CLIENT_AUTH
   * @returns SERVER_KEY and FINISHED record payloads, to send in that order
   * @throws {AuthError} `login-failed`, the same for an unknown user and a bad signature
   */
  onClientAuth(payload: Uint8Array): Promise<Uint8Array[]> {
    return this.#step("await-client-auth", async () => {
      const { signature } = decodeClientAuth(payload);
      const user = this.#hello!.user;
      const known = this.#opts.lookupUser(user);
      // Asked for every name, known or not: both paths await the same things.
      const decoy = await this.#decoys.decoyFor(user);
      const ok = await verifyPss(
        (known ?? decoy).verify,
        signature,
        signedContent(Label.CLIENT_SIGNATURE, this.#th!),
      );
      if (!ok || known === undefined) {
        throw new AuthError(
          "login-failed",
          "Login refused: unknown user or wrong key",
        );
      }
      // A low-order ephemeral fails here, before there is a key to wipe.
      const dh = await sharedSecret(this.#eph!, this.#hello!.ephemeral);
      const sessionKey = randomBytes(SESSION_KEY_BYTES);
      let sealed: Uint8Array, tag: Uint8Array, th2: Uint8Array;
      try {
        sealed = await encryptOaep(
          known.encrypt,
          sessionKey,
          utf8(Label.SESSION_KEY),
        );
        tag = await serverKeyTag(dh, this.#th!, sealed);
        th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [
          this.#th!,
          signature,
          sealed,
        ]);
      } catch (e) {
        wipe(sessionKey, dh);
        throw e;
      }
      const keys = await loginKeys(
        sessionKey,
        dh,
        th2,
        "server",
        this.#opts.windowMs,
      );
      this.#th2 = th2;
      this.#result = {
        user: this.#hello!.user,
        sealer: keys.sealer,
        opener: keys.opener,
        ticketKeys: keys.ticketKeys,
        transcript: th2,
        peerFingerprint: known.fingerprint,
      };
      this.#steps.state = "await-client-finished";
      return [
        encodeServerKey({ sealedSessionKey: sealed, tag }),
        keys.sealer.seal(RecordType.FINISHED, th2, this.#opts.now?.()),
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
      const now = this.#opts.now?.() ?? Date.now();
      const v = verifyFinished(this.#result!.opener, payload, this.#th2!, now);
      if (!v.ok) {
        // Still a failed key confirmation (rule 2.4), but the ERROR frame
        // tells the client it is the clocks (PROTOCOL.md section 4).
        throw new AuthError(
          "key-confirmation-failed",
          v.clockOffsetMs === undefined
            ? "Client could not prove it holds the session keys"
            : describeClockSkew(
              "the client's",
              v.clockOffsetMs,
              v.windowMs ?? 0,
            ).replace("This computer's clock", "The server's clock"),
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
