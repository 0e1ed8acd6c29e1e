/**
 * What the client shows the user about its peer session (PROTOCOL.md
 * section 6): messages both ways, receipts, problems, why it ended, in
 * words; `!whoami`; and the wording of an error.
 * @module
 */

import { isImError } from "../util/mod.ts";
import type { PeerSession, QueuedText } from "./peer_session.ts";
import type { ClientContext, ClientOptions, NewEvent } from "./options.ts";

/** An error as the user sees it: ours by its code, anything else as internal. */
export function errorEvent(e: unknown): NewEvent {
  return isImError(e) ? { kind: "error", code: e.code, text: e.message } : {
    kind: "error",
    code: "internal",
    text: `Internal error: ${(e as Error)?.message ?? e}`,
  };
}

/**
 * Where joiners reach a host, in words: `at 127.0.0.1:5000`, or `through
 * the server relay` for a host that advertises the relay (`relay:0`,
 * PROTOCOL.md section 6.1).
 * @param addr the address the host advertises
 * @returns the words
 */
export function hostingWhere(addr: string): string {
  return addr.startsWith("relay:") ? "through the server relay" : `at ${addr}`;
}

/**
 * The `!whoami` line.
 * @param o the client's settings
 * @param where the session, or the mode in words
 */
export function whoami(o: ClientOptions, where: PeerSession | string): string {
  const doing = typeof where === "string"
    ? where
    : `in a ${where.transport} session with ${where.peer} (code ${where.sas})`;
  return `You are ${o.user} (${o.identity.fingerprint}); server ${o.serverHost}:${o.serverPort} (${o.pinnedServer.fingerprint}); ${doing}`;
}

/**
 * Send a chat message in the session, and show it (or why it was not sent).
 * The message is sealed and queued, and shown, without waiting for its
 * write (issue 15): lines typed in a burst leave together, in order. A
 * write that fails later is reported for that message; the caller waits
 * only while the session's send queue is full ({@link PeerSession.room}).
 * @param ctx where to show it
 * @param session the session, or null when there is none
 * @param text the message
 */
export function sendText(
  ctx: ClientContext,
  session: PeerSession | null,
  text: string,
): Promise<void> | undefined {
  if (!session) {
    ctx.print({
      kind: "error",
      code: "no-session",
      text:
        "Not sent: you are not in a session; use !session <user> or !session host",
    });
    return;
  }
  let queued: QueuedText;
  try {
    queued = session.queueText(text);
  } catch (e) {
    ctx.print(notSent(e));
    return;
  }
  ctx.print({
    kind: "message",
    from: ctx.o.user,
    to: session.peer,
    text,
    id: queued.id,
    direction: "out",
  });
  queued.written.catch((e) => ctx.print(notSent(e, queued.id)));
  return session.room();
}

function notSent(e: unknown, id?: string): NewEvent {
  return {
    kind: "error",
    code: isImError(e) && e.code === "message-too-large"
      ? e.code
      : "not-delivered",
    text: `Not delivered${id === undefined ? "" : ` (#${id})`}: ${
      (e as Error).message
    }`,
  };
}

/**
 * Show a session's events until it ends.
 * @param ctx where to show them
 * @param session the session
 * @param ended called once, after its end was shown
 * @param note why it ended, when the client knows better than the channel
 *   (our login was replaced; the server said the peer went away)
 */
export async function showSession(
  ctx: ClientContext,
  session: PeerSession,
  ended: () => Promise<void>,
  note: () => string | undefined = () => undefined,
): Promise<void> {
  const self = ctx.o.user, peer = session.peer;
  for await (const ev of session.events()) {
    switch (ev.kind) {
      case "text":
        ctx.print({
          kind: "message",
          from: peer,
          to: self,
          text: ev.text,
          id: ev.id,
          direction: "in",
        });
        break;
      case "delivered":
        ctx.print({ kind: "receipt", id: ev.id, status: "delivered", peer });
        break;
      case "problem":
        ctx.print({ kind: "error", code: ev.code, text: ev.message });
        break;
      case "ended": {
        for (const u of ev.undelivered) {
          ctx.print({
            kind: "receipt",
            id: u.id,
            status: "undelivered",
            peer,
          });
        }
        ctx.print({
          kind: "session",
          state: "ended",
          peer,
          reason: note() ?? endReason(ev.reason, peer),
          transport: session.transport,
        });
        await ended();
        break;
      }
    }
  }
}

/**
 * Why a session ended, in words: the peer's CLOSE reason (PROTOCOL.md
 * section 6), the channel's, or `local` when we closed it.
 * @param reason the reason
 * @param peer the other user
 * @returns the words
 */
export function endReason(reason: string, peer: string): string {
  switch (reason) {
    case "disconnect":
      return `${peer} ended the session`;
    case "quit":
      return `${peer} logged out`;
    case "replaced":
      return replacedBy(peer);
    case "revoked":
      return `the key of ${peer} was revoked by the server operator`;
    case "peer-silent":
    case "timeout":
      return `${peer} stopped answering`;
    case "connection-lost":
    case "protocol-error":
      return `the connection to ${peer} was lost`;
    case "local":
      return "you ended the session";
    default:
      return `${peer} left (${reason})`;
  }
}

/**
 * Why we end a session when the server ends our login for good, in the
 * user's words; undefined for a plain quit.
 * @param reason the CLOSE reason we send (see {@link closeReasonFor})
 * @param self our name
 * @returns the words, if they are not "you ended the session"
 */
export function localEndNote(
  reason: string,
  self: string,
): string | undefined {
  return reason === "replaced"
    ? replacedBy(self)
    : reason === "revoked"
    ? "your key was revoked by the server operator"
    : undefined;
}

/**
 * The CLOSE reason for a peer session that ends because the server ended
 * our login (its `closing` reason, PROTOCOL.md section 5): `replaced` and
 * `revoked` travel to the peer as they are, anything else is a `quit`.
 * @param code the code of the error that ended the client
 * @returns the reason
 */
export function closeReasonFor(code: string): string {
  return code === "replaced" || code === "revoked" ? code : "quit";
}

function replacedBy(user: string): string {
  return `replaced by a newer login of ${user}`;
}
