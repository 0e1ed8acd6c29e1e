/**
 * One login to one server node (PROTOCOL.md section 3): connect, run the
 * client's side of the handshake within the login deadline, and hand back
 * the secure channel and the login's keys; and the wiping of those keys
 * when the login ends.
 * @module
 */

import { DEFAULT_HEARTBEAT_MS } from "../record/mod.ts";
import {
  ClientHandshake,
  LOGIN_TIMEOUT_MS,
  type LoginResult,
  ServerLink,
} from "../proto/mod.ts";
import { NetError, wipe, within } from "../util/mod.ts";
import { type FrameTransport, tcpNetwork } from "../wire/mod.ts";
import type { ClientOptions, ServerAddress } from "./options.ts";
import { traceStart } from "./start.ts";

/**
 * Connect to the server and log in, all within the login deadline
 * (`loginTimeoutMs`, default {@link LOGIN_TIMEOUT_MS}): a server that does
 * not answer, or an address where packets vanish, fails with `login-timeout`
 * instead of hanging for the minutes a TCP connect can take.
 * @param o client settings
 * @param at the node to log in to (default `o.serverHost`:`o.serverPort`)
 * @returns the server channel and the login keys
 * @throws {NetError} server unreachable, or `login-timeout`; {@link AuthError} refused; {@link ProtocolError}
 * @example
 * ```ts ignore
 * const { channel, login } = await loginToServer(options);
 * ```
 */
export async function loginToServer(
  o: ClientOptions,
  at: ServerAddress = { host: o.serverHost, port: o.serverPort },
): Promise<{ channel: ServerLink; login: LoginResult }> {
  const where = `${at.host}:${at.port}`;
  const timeoutMs = o.loginTimeoutMs ?? LOGIN_TIMEOUT_MS;
  const timeoutError = () =>
    new NetError(
      "login-timeout",
      `Server at ${where} did not answer within ${timeoutMs / 1000} s`,
    );
  const network = o.network ?? tcpNetwork;
  const hs = new ClientHandshake({
    user: o.user,
    identity: o.identity,
    pinnedServer: o.pinnedServer,
    ...(o.windowMs === undefined ? {} : { windowMs: o.windowMs }),
  });
  // Our ephemeral key (the CLIENT_HELLO) is made while the connection is
  // set up (issue 15); its failure, if any, is thrown once connected.
  const clientHello = hs.start();
  clientHello.catch(() => {});
  let t: FrameTransport | undefined;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    t?.close(); // a login step waiting on the server ends now
  }, timeoutMs);
  try {
    // A connection that completes after the deadline is closed at once.
    traceStart("connect");
    t = await within(
      network.connect(at.host, at.port),
      timeoutMs,
      undefined,
      (late) => late.close(),
    );
    if (!t) throw timeoutError();
    traceStart("connected");
    const conn = t;
    const recv = async () => {
      const p = await conn.recv();
      if (p === null) {
        throw new NetError(
          "server-closed",
          `Server at ${where} closed the connection during login`,
        );
      }
      return p;
    };
    await conn.send(await clientHello);
    traceStart("client hello sent");
    const serverHello = await recv();
    traceStart("server hello received");
    await conn.send(await hs.onServerHello(serverHello));
    traceStart("client key sent");
    const serverKey = await recv();
    traceStart("server key received");
    await hs.onServerKey(serverKey);
    traceStart("session keys derived");
    const finished = await recv();
    traceStart("server finished received");
    await conn.send(await hs.onServerFinished(finished));
    traceStart("client finished sent");
    if (timedOut) throw timeoutError();
    const login = hs.result;
    const channel = new ServerLink(conn, login.sealer, login.opener, {
      heartbeatMs: o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    });
    return { channel, login };
  } catch (e) {
    t?.close();
    // The ephemeral key is not left in the making (a refused connection
    // fails before it is ready).
    await clientHello.catch(() => {});
    // Whatever broke once the deadline passed (a send on the closed socket,
    // say), the cause is the deadline.
    throw timedOut ? timeoutError() : e;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A login's ticket keys are raw bytes, kept while it lasts: wiped when it ends.
 * @param login the login that ended
 */
export function wipeTicketKeys(login: LoginResult): void {
  wipe(login.ticketKeys.enc, login.ticketKeys.mac);
}
