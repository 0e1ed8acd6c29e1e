/**
 * The server's edge: accepts connections from a {@link FrameListener} and
 * runs the login (PROTOCOL.md section 3; requirements 1.2, 2.x) on each,
 * in its own task with its own errors, then hands the finished login on.
 *
 * Before keys exist it is the gate: a login must finish within a deadline
 * (rule 1.2); unauthenticated connections are capped per address and in
 * total, the oldest evicted ({@link LoginAdmission}); an address that keeps
 * failing is refused for a while ({@link FailurePenalty}, rule 2.4). Both
 * count by {@link addressKey} (IPv6 per prefix, loopback as one host). Every
 * refusal is one ERROR frame, then the close.
 * @module
 */

import {
  AuthError,
  isImError,
  type Logger,
  NetError,
  ProtocolError,
  sleep,
  withinRunTime,
} from "../util/mod.ts";
import {
  encodeErrorFrame,
  ErrorCode,
  errorFrameCode,
  type LoginDecoys,
  type LoginResult,
  ServerHandshake,
} from "../proto/mod.ts";
import {
  type Farewell,
  FrameKind,
  type FrameListener,
  type FrameTransport,
} from "../wire/mod.ts";
import type { PrivateIdentity, PublicIdentity } from "../crypto/mod.ts";
import {
  addressKey,
  type AdmissionLimits,
  DEFAULT_IPV6_PREFIX_BITS,
  FailurePenalty,
  LoginAdmission,
  type PenaltyOptions,
} from "./admission.ts";

/** How long the server waits for a goodbye message to be written before it closes the connection anyway: of its own running time ({@link withinRunTime}), so a stall of the server is not counted against the client. */
export const GOODBYE_TIMEOUT_MS = 1000;

/** A transport as the listener hands it out. */
type Conn = FrameTransport & Farewell;

interface Pending {
  /** The {@link addressKey} it is counted under. */
  address: string;
  transport: Conn;
}

/** What the {@link Edge} needs. */
export interface EdgeOptions {
  identity: PrivateIdentity;
  /** Signs SERVER_HELLO's transcript with `identity` (2.2; default on this thread). */
  sign?: (data: Uint8Array) => Promise<Uint8Array>;
  /** The client directory as it is now. */
  lookupUser: (name: string) => PublicIdentity | undefined;
  /**
   * What an unknown user's signature is checked against: decoys shaped like
   * the enrolled keys, kept up to date by the server (rule 2.4).
   */
  decoys: LoginDecoys;
  /** Rule 1.2. */
  loginTimeoutMs: number;
  /** Rule 3.5 freshness window. */
  windowMs: number;
  admission: AdmissionLimits;
  penalty: PenaltyOptions;
  /**
   * IPv6 clients are counted per this prefix by the caps and the penalty
   * ({@link addressKey}; default {@link DEFAULT_IPV6_PREFIX_BITS}).
   */
  ipv6PrefixBits?: number;
  log: Logger;
  /**
   * A login finished; the transport now carries records only (rule 3.6).
   * The connection's task lasts until this settles.
   */
  onLogin: (login: LoginResult, t: FrameTransport) => Promise<void>;
}

/**
 * Send one ERROR frame, best effort and bounded in time, then close.
 * @param t the connection
 * @param code an {@link ErrorCode}
 * @param message one line for the user
 */
export function refuse(t: FrameTransport, code: number, message: string): void {
  if (t.closed) return;
  withinRunTime(
    t.send(encodeErrorFrame({ code, message })).catch(() => {}),
    GOODBYE_TIMEOUT_MS,
    undefined,
  ).finally(() => t.close());
}

/** Accepts connections and logs them in. */
export class Edge {
  #listener: FrameListener;
  #o: EdgeOptions;
  #pending: LoginAdmission<Pending>;
  #failures: FailurePenalty;
  #tasks = new Set<Promise<void>>();
  #closing = false;
  #loop: Promise<void>;

  /**
   * Start accepting.
   * @param listener where connections come from
   * @param o keys, limits and what to do with a login
   */
  constructor(listener: FrameListener, o: EdgeOptions) {
    this.#listener = listener;
    this.#o = o;
    this.#pending = new LoginAdmission(o.admission);
    this.#failures = new FailurePenalty(o.penalty);
    this.#loop = this.#accept();
  }

  /** The port listened on. */
  get port(): number {
    return this.#listener.port;
  }

  /** Unauthenticated connections open now. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Stop accepting and close every login in progress. */
  stop(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#listener.close();
    for (const p of this.#pending.all()) p.transport.close();
  }

  /** Resolve when the accept loop and every connection's task have ended. */
  async done(): Promise<void> {
    await this.#loop;
    await Promise.all([...this.#tasks]);
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Conn;
      try {
        conn = await this.#listener.accept();
      } catch (e) {
        if (this.#closing || (isImError(e) && e.code === "closed")) return;
        // EMFILE and friends: log, breathe, keep serving everyone else.
        this.#o.log("accept-error", { error: (e as Error).message });
        await sleep(100);
        continue;
      }
      // One `then` for the end and the error, not `catch` and `finally`:
      // what waits on a connection's task is kept for as long as it lasts
      // (issue 15, BENCHMARKS.md "Idle connections").
      const task: Promise<void> = this.#handle(conn).then(() => {
        this.#tasks.delete(task);
      }, (e) => {
        this.#tasks.delete(task);
        this.#o.log("connection-error", {
          error: (e as Error)?.message ?? String(e),
        });
      });
      this.#tasks.add(task);
    }
  }

  #recordFailure(address: string, now: number): void {
    const penaltyMs = this.#failures.recordFailure(address, now);
    if (penaltyMs > 0) {
      this.#o.log("penalty", {
        addr: address,
        seconds: Math.round(penaltyMs / 1000),
      });
    }
  }

  /** Admit a new unauthenticated connection, evicting the oldest ones over the caps (rule 1.2). */
  #admit(p: Pending): void {
    for (const q of this.#pending.admit(p.address, p)) {
      this.#o.log("evicted", {
        addr: q.transport.remote,
        reason: "too many unauthenticated connections",
      });
      refuse(
        q.transport,
        ErrorCode.TOO_MANY,
        "Too many connections are logging in; try again",
      );
    }
  }

  async #handle(t: Conn): Promise<void> {
    const address = addressKey(
      t.remoteHost,
      this.#o.ipv6PrefixBits ?? DEFAULT_IPV6_PREFIX_BITS,
    );
    const wait = this.#failures.penalty(address, Date.now());
    if (wait > 0) {
      refuse(
        t,
        ErrorCode.RATE_LIMITED,
        `Too many failed logins from your address; try again in ${
          Math.ceil(wait / 1000)
        } s`,
      );
      return;
    }
    if (this.#closing) {
      refuse(t, ErrorCode.SHUTDOWN, "Server is shutting down");
      return;
    }
    const login = await this.#login(t, address);
    if (!login) return;
    // Rule 3.6: nothing in clear after login, not even an error frame.
    t.farewell = undefined;
    if (this.#closing) {
      t.close();
      return;
    }
    // Returned, not awaited: this frame (and the login it holds) ends now,
    // and the task lasts as long as the connection's (issue 15).
    return this.#o.onLogin(login, t);
  }

  /** The login of one admitted connection; undefined when it failed (the connection is refused). */
  async #login(t: Conn, address: string): Promise<LoginResult | undefined> {
    const pending: Pending = { address, transport: t };
    this.#admit(pending);
    const timeoutMs = this.#o.loginTimeoutMs;
    const deadline = setTimeout(() => {
      this.#o.log("login-timeout", { addr: t.remote });
      refuse(
        t,
        ErrorCode.TIMEOUT,
        `Login not finished within ${timeoutMs / 1000} s`,
      );
    }, timeoutMs);
    // Each SERVER_HELLO costs an RSA signature: a login abandoned after one
    // counts as a failure, so one address cannot make the server sign for
    // it in a loop (rule 1.2, rule 2.4).
    let signed = false;
    let failureCounted = false;
    try {
      const hs = new ServerHandshake({
        identity: this.#o.identity,
        lookupUser: this.#o.lookupUser,
        decoy: this.#o.decoys,
        windowMs: this.#o.windowMs,
        ...(this.#o.sign && { sign: this.#o.sign }),
      });
      const serverHello = await hs.onClientHello(await recvLogin(t));
      signed = true;
      await t.send(serverHello);
      const auth = await recvLogin(t);
      let replies: Uint8Array[];
      try {
        replies = await hs.onClientAuth(auth);
      } catch (e) {
        if (!(e instanceof AuthError)) throw e;
        failureCounted = true;
        this.#recordFailure(address, Date.now());
        this.#o.log("login-failed", {
          addr: t.remote,
          user: hs.claimedUser,
          reason: "unknown user or bad signature",
        });
        refuse(t, ErrorCode.AUTH_FAILED, "unknown user or wrong key");
        return undefined;
      }
      for (const r of replies) await t.send(r);
      await hs.onClientFinished(await recvLogin(t));
      return hs.result;
    } catch (e) {
      if (signed && !failureCounted) this.#recordFailure(address, Date.now());
      // Broken framing closed the transport already (after its ERROR
      // farewell); it is still worth a line in the log.
      const framing = e instanceof ProtocolError && t.closed;
      if (!t.closed || framing) {
        this.#o.log("login-error", {
          addr: t.remote,
          error: isImError(e) ? e.code : "internal",
          detail: (e as Error).message,
        });
      }
      if (!t.closed) {
        refuse(
          t,
          errorFrameCode(e),
          isImError(e) ? e.message : "Internal error",
        );
      }
      return undefined;
    } finally {
      clearTimeout(deadline);
      this.#pending.remove(address, pending);
    }
  }
}

/** The next login frame; an ERROR frame or the end of the stream fails the login. */
async function recvLogin(t: FrameTransport): Promise<Uint8Array> {
  const p = await t.recv();
  if (p === null) {
    throw new NetError("closed", "Connection closed during login");
  }
  if (p[0] === FrameKind.ERROR) {
    throw new ProtocolError("peer-error", "Client sent an error during login");
  }
  return p;
}
