/**
 * What became of the mail we sent (PROTOCOL.md section 9.6), as our log
 * tells it: `delivered` with the recipient's proof, checked against the
 * receipt key kept as pending; `expired`, the server's word; and, at
 * login, the messages that never got a receipt within 31 days.
 * @module
 */

import {
  checkReceiptProof,
  mailIdHex,
  type MailVault,
  type ServerToClient,
} from "../proto/mod.ts";
import { ProtocolError } from "../util/mod.ts";
import type { ClientContext } from "./options.ts";
import type { ServerConnection } from "./server_link.ts";

/** A `receipt` push. */
export type ReceiptPush = Extract<ServerToClient, { t: "receipt" }>;

/** A `pending` entry older than this was never delivered (section 9.6). */
export const PENDING_MAX_AGE_MS = 31 * 24 * 60 * 60 * 1000;

/**
 * At each login: the messages sent 31 days ago or more with no delivered
 * receipt are forgotten, and the user is told of each (section 9.6: never
 * silently lost).
 * @param ctx where to show them
 * @param link the server's clock
 * @param vault the pending receipts
 */
export async function expirePending(
  ctx: ClientContext,
  link: ServerConnection,
  vault: MailVault,
): Promise<void> {
  const before = link.serverNow() - PENDING_MAX_AGE_MS;
  for (const p of await vault.expirePending(before)) {
    ctx.print({
      kind: "receipt",
      id: mailIdHex(p.msgId),
      status: "undelivered",
      peer: p.to ?? "",
      via: "mail",
    });
  }
}

/**
 * Section 9.6: a receipt of a message we sent, pushed from our log.
 * `delivered` counts only with the proof of the `rk` kept as pending;
 * `expired` is the server's word. A receipt for a message no longer pending
 * (told before: pushed again after a drop, or a duplicate the recipient
 * acknowledged again) is ignored.
 * @param ctx where to show it
 * @param vault the pending receipts
 * @param m the push
 * @throws {ProtocolError} `bad-receipt`
 */
export async function onReceipt(
  ctx: ClientContext,
  vault: MailVault,
  m: ReceiptPush,
): Promise<undefined> {
  const via = "mail" as const;
  let msgId: Uint8Array;
  try {
    if (!/^[0-9a-f]{32}$/.test(m.id)) throw new Error("not 32 hex digits");
    msgId = Uint8Array.fromHex(m.id);
  } catch {
    throw new ProtocolError(
      "bad-receipt",
      `A receipt for mail to ${m.to} names no message id`,
    );
  }
  if (m.status !== "delivered" && m.status !== "expired") return; // `stored` answers a send
  const pending = await vault.pending(msgId);
  // Told before: a receipt pushed again after a drop, or a duplicate the
  // recipient acknowledged again with its proof (section 9.4 step 4).
  if (pending === undefined) return;
  if (m.status === "expired") {
    await vault.dropPending(msgId);
    ctx.print({
      kind: "receipt",
      id: m.id,
      status: "expired",
      peer: m.to,
      via,
    });
    return;
  }
  let proof: Uint8Array | undefined;
  try {
    proof = Uint8Array.fromBase64(m.proof);
  } catch {
    proof = undefined;
  }
  const ok = proof !== undefined &&
    (pending.to === undefined || pending.to === m.to) &&
    await checkReceiptProof(pending.rk, msgId, proof);
  if (!ok) {
    throw new ProtocolError(
      "bad-receipt",
      `A delivered receipt for mail to ${m.to} (#${
        m.id.slice(0, 8)
      }) carries a wrong proof: it stays undelivered`,
    );
  }
  ctx.print({
    kind: "receipt",
    id: m.id,
    status: "delivered",
    peer: m.to,
    via,
  });
  await vault.dropPending(msgId);
}
