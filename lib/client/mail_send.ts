/**
 * Sending mail (PROTOCOL.md section 9.2): `!msg <user> <text>` and
 * `@<user> <text>`. The size is checked before anything is asked or sealed;
 * then the recipient's bundle is fetched and verified against its pinned
 * key (`mail_peers.ts`), the text sealed to it with our identity key
 * (`mail_keys.ts`), the receipt key kept as pending, and the sealed message
 * sent; the server's `stored` (or its refusal) is shown.
 * @module
 */

import {
  bucketOf,
  decodeOneTimePrekey,
  mailIdHex,
  type MailVault,
  MAX_MAIL_TEXT_BYTES,
  sealMail,
} from "../proto/mod.ts";
import { isImError, ProtocolError, utf8 } from "../util/mod.ts";
import type { MailKeys } from "./mail_keys.ts";
import { ask, bundleOf, type MailPeers } from "./mail_peers.ts";
import type { ClientContext } from "./options.ts";
import type { ServerConnection } from "./server_link.ts";

/** A `MAIL`'s bytes besides the two names and the ciphertext: header 99, tag 32 (section 9.3). */
const MAIL_FIXED_BYTES = 99 + 32;
/** A plaintext's bytes before the text: `u8 type || u32 len`. */
const PLAINTEXT_HEAD_BYTES = 5;
/**
 * The most JSON around the base64 of a `MAIL` in the `mail` push the
 * recipient gets, which must fit one record (section 9.8):
 * `{"t":"mail","seq":<16>,"from":"<32>","at":<16>,"mail":""}` with room.
 */
const MAIL_PUSH_JSON_BYTES = 128;

/**
 * The bytes of the `mail` push of a text: what the server's frame limit
 * must hold (section 9.8, `mail-too-large`).
 * @param from the sender
 * @param to the recipient
 * @param textBytes the text's UTF-8 length
 * @returns the push's JSON length, at most
 */
export function mailPushBytes(
  from: string,
  to: string,
  textBytes: number,
): number {
  const mail = MAIL_FIXED_BYTES + utf8(from).length + utf8(to).length +
    bucketOf(PLAINTEXT_HEAD_BYTES + textBytes);
  return MAIL_PUSH_JSON_BYTES + 4 * Math.ceil(mail / 3);
}

/** Sends mail. */
export class MailSender {
  #ctx: ClientContext;
  #link: ServerConnection;
  #keys: MailKeys;
  #peers: MailPeers;
  #vault: MailVault;

  constructor(
    ctx: ClientContext,
    link: ServerConnection,
    keys: MailKeys,
    peers: MailPeers,
    vault: MailVault,
  ) {
    this.#ctx = ctx;
    this.#link = link;
    this.#keys = keys;
    this.#peers = peers;
    this.#vault = vault;
  }

  /**
   * Mail `text` to `to`, showing it, then `stored` or why not. Resolves
   * once the server answered the `send` (or the attempt failed): a
   * script's next line comes after.
   * @param to the recipient
   * @param text the text
   */
  async send(to: string, text: string): Promise<void> {
    const me = this.#ctx.o.user;
    const fail = (code: string, why: string) =>
      this.#ctx.print({
        kind: "error",
        code,
        text: `Mail to ${to} not sent: ${why}`,
      });
    const size = utf8(text).length;
    if (size > MAX_MAIL_TEXT_BYTES) {
      fail(
        "message-too-large",
        `${size} bytes of text; the limit is ${MAX_MAIL_TEXT_BYTES}`,
      );
      return;
    }
    if (mailPushBytes(me, to, size) > this.#link.recordRoom) {
      fail(
        "message-too-large",
        `${size} bytes of text do not fit the server's frame limit once sealed; send less`,
      );
      return;
    }
    let sealed: { mail: Uint8Array; msgId: Uint8Array; rk: Uint8Array };
    let time: number;
    try {
      const identity = await this.#keys.identity();
      const bundle = bundleOf(
        to,
        await ask(this.#link, { t: "fetch", user: to }),
        this.#link,
      );
      const peer = await this.#peers.forSending(bundle);
      const opk = bundle.oneTimePrekey === ""
        ? undefined
        : decodeOneTimePrekey(opkBytes(bundle.oneTimePrekey, to));
      time = this.#link.serverNow();
      sealed = await sealMail({
        sender: me,
        recipient: to,
        senderFingerprint: this.#ctx.o.identity.fingerprintBytes,
        recipientFingerprint: peer.owner.fingerprintBytes,
        senderIdentity: identity.pair,
        recipientIdentityKey: peer.identity.ik,
        signedPrekey: { id: peer.prekey.id, key: peer.prekey.spk },
        oneTimePrekey: opk,
        text,
        time,
      });
    } catch (e) {
      fail(
        isImError(e) ? e.code : "internal",
        isImError(e) ? e.message : `internal error: ${(e as Error).message}`,
      );
      return;
    }
    const id = mailIdHex(sealed.msgId);
    // Kept before it leaves: a receipt may come back at once.
    await this.#vault.addPending({
      msgId: sealed.msgId,
      rk: sealed.rk,
      time,
      to,
    });
    const { sent, answer } = this.#link.request({
      t: "send",
      to,
      mail: sealed.mail.toBase64(),
    }, true);
    if (!(await sent)) {
      await this.#vault.dropPending(sealed.msgId);
      fail("offline", "not connected to the server");
      return;
    }
    this.#ctx.print({
      kind: "mail",
      direction: "out",
      from: me,
      to,
      text,
      id,
      written: time,
    });
    const a = await answer;
    if (a?.t === "receipt" && a.status === "stored" && a.id === id) {
      this.#ctx.print({
        kind: "receipt",
        id,
        status: "stored",
        peer: to,
        via: "mail",
      });
      return;
    }
    if (a?.t === "error") {
      await this.#vault.dropPending(sealed.msgId);
      this.#ctx.print({
        kind: "error",
        code: a.code,
        text: `Mail to ${to} (#${id.slice(0, 8)}) not stored: ${a.message}`,
      });
      return;
    }
    // No answer (the link dropped, or too slow): it may have been stored.
    // It stays pending: its delivered receipt is still welcome, and after 31
    // days without one the user is told it was not delivered.
    this.#ctx.print({
      kind: "error",
      code: a === null ? "no-answer" : "unexpected-message",
      text: `Mail to ${to} (#${
        id.slice(0, 8)
      }): the server did not confirm storing it; it may not arrive`,
    });
  }
}

function opkBytes(s: string, to: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(s);
  } catch {
    throw new ProtocolError(
      "bad-bundle",
      `Keys of "${to}" refused: the one-time prekey is not base64`,
    );
  }
}
