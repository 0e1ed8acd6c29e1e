/**
 * Generates `tickets.json`: ticket test vectors with fixed inputs, so the
 * file is reproducible byte for byte.
 *
 * Tickets are built here straight from PROTOCOL.md "Tickets", not with
 * `lib/ticket.ts` (whose IV is random):
 * `sealed = iv[32] || MD-CFB(encKey, iv, body) || HMAC(macKey, iv || ct)[32]`,
 * `body = version u8 || id[16] || expiresAt u64 ms || host (u8 len) ||
 * joiner (u8 len) || peerKey[32]`. The IVs here are fixed.
 *
 * Run: `deno run --allow-write=tests/vectors tests/vectors/generate_tickets.ts`
 * @module
 */

import { MdCfb, HmacSha256, sha256 } from "../../lib/crypto/mod.ts";

/** Expected verdict of `openTicket`. */
export type TicketExpect = "success" | "bad-ticket" | "misbound" | "expired" | "bad-expiry";

/** One ticket vector. */
export interface TicketVector {
  name: string;
  /** The joiner's ticket keys, hex. */
  keys: { enc: string; mac: string };
  /** Joiner clock in ms. */
  now: number;
  /** Who opens it. */
  self: string;
  /** The host the joiner was told to expect. */
  expectedHost: string;
  /** The sealed ticket, hex. */
  ticket: string;
  expect: TicketExpect;
  /** On success: the contents. */
  id?: string;
  host?: string;
  joiner?: string;
  expiresAt?: number;
  peerKey?: string;
}

const enc = new TextEncoder();
const NOW = 1_700_000_000_000;

function fixed(label: string): Uint8Array {
  return sha256(enc.encode(`im test vector ${label}`));
}

const K = { enc: fixed("tickets enc"), mac: fixed("tickets mac") };
const ID = fixed("ticket id").subarray(0, 16);
const PEER_KEY = fixed("peer key");

interface Body {
  version?: number;
  id?: Uint8Array;
  expiresAt?: number;
  host?: Uint8Array;
  joiner?: Uint8Array;
  peerKey?: Uint8Array;
  trailing?: Uint8Array;
}

/** The ticket body by the PROTOCOL.md definition; fields may be broken on purpose. */
function body(b: Body = {}): Uint8Array {
  const host = b.host ?? enc.encode("A");
  const joiner = b.joiner ?? enc.encode("B");
  const id = b.id ?? ID;
  const peerKey = b.peerKey ?? PEER_KEY;
  const trailing = b.trailing ?? new Uint8Array(0);
  const out = new Uint8Array(1 + id.length + 8 + 1 + host.length + 1 + joiner.length + peerKey.length + trailing.length);
  const view = new DataView(out.buffer);
  let o = 0;
  out[o++] = b.version ?? 1;
  out.set(id, o);
  o += id.length;
  view.setBigUint64(o, BigInt(b.expiresAt ?? NOW + 30_000));
  o += 8;
  out[o++] = host.length;
  out.set(host, o);
  o += host.length;
  out[o++] = joiner.length;
  out.set(joiner, o);
  o += joiner.length;
  out.set(peerKey, o);
  o += peerKey.length;
  out.set(trailing, o);
  return out;
}

/** Seal a body with a fixed IV. */
function seal(k: typeof K, plain: Uint8Array, ivLabel = "ticket iv"): Uint8Array {
  const iv = fixed(ivLabel);
  const ct = new MdCfb(k.enc).encrypt(iv, plain);
  const ivCt = new Uint8Array([...iv, ...ct]);
  return new Uint8Array([...ivCt, ...new HmacSha256(k.mac).mac(ivCt)]);
}

function flip(b: Uint8Array, byte: number): Uint8Array {
  const x = new Uint8Array(b);
  x[byte] = x[byte]! ^ 0x01;
  return x;
}

/**
 * Build every case, deterministically.
 * @returns the vectors
 */
export function buildTicketVectors(): TicketVector[] {
  const cases: TicketVector[] = [];
  const add = (
    name: string,
    ticket: Uint8Array,
    expect: TicketExpect,
    o: { now?: number; self?: string; expectedHost?: string; expiresAt?: number; keys?: typeof K } = {},
  ) => {
    const v: TicketVector = {
      name,
      keys: { enc: (o.keys ?? K).enc.toHex(), mac: (o.keys ?? K).mac.toHex() },
      now: o.now ?? NOW,
      self: o.self ?? "B",
      expectedHost: o.expectedHost ?? "A",
      ticket: ticket.toHex(),
      expect,
    };
    if (expect === "success") {
      Object.assign(v, {
        id: ID.toHex(),
        host: o.expectedHost ?? "A",
        joiner: o.self ?? "B",
        expiresAt: o.expiresAt ?? NOW + 30_000,
        peerKey: PEER_KEY.toHex(),
      });
    }
    cases.push(v);
  };
  const good = seal(K, body());

  // Success.
  add("A -> B, 30 s left", good, "success");
  add("exactly at the expiry", seal(K, body({ expiresAt: NOW })), "success", { expiresAt: NOW });
  add("expiry exactly 60 s ahead", seal(K, body({ expiresAt: NOW + 60_000 })), "success", { expiresAt: NOW + 60_000 });
  add(
    "32-character names",
    seal(K, body({ host: enc.encode("h".repeat(32)), joiner: enc.encode("j".repeat(32)) })),
    "success",
    { self: "j".repeat(32), expectedHost: "h".repeat(32) },
  );

  // Expiry.
  add("1 ms after the expiry", good, "expired", { now: NOW + 30_001 });
  add("an hour after the expiry", good, "expired", { now: NOW + 3_600_000 });
  add("expiry 60.001 s ahead", seal(K, body({ expiresAt: NOW + 60_001 })), "bad-expiry");
  add("expiry a day ahead", seal(K, body({ expiresAt: NOW + 86_400_000 })), "bad-expiry");

  // Names.
  add("presented to C", good, "misbound", { self: "C" });
  add("joiner expected another host", good, "misbound", { expectedHost: "C" });
  add("names swapped", good, "misbound", { self: "A", expectedHost: "B" });
  add("joiner name differs in case", good, "misbound", { self: "b" });

  // Cryptographic failures: one opaque verdict.
  add("another user's keys", good, "bad-ticket", {
    keys: { enc: fixed("other enc"), mac: fixed("other mac") },
  });
  add("right encryption key, wrong MAC key", good, "bad-ticket", { keys: { enc: K.enc, mac: fixed("other mac") } });
  add("right MAC key, wrong encryption key", good, "bad-ticket", { keys: { enc: fixed("other enc"), mac: K.mac } });
  add("flipped IV bit", flip(good, 0), "bad-ticket");
  add("flipped ciphertext bit", flip(good, 40), "bad-ticket");
  add("flipped tag bit", flip(good, good.length - 1), "bad-ticket");
  add("truncated by one byte", good.subarray(0, good.length - 1), "bad-ticket");
  add("extended by one byte", new Uint8Array([...good, 0]), "bad-ticket");
  add("only IV and tag", good.subarray(0, 64), "bad-ticket");
  add("empty", new Uint8Array(0), "bad-ticket");
  add("valid MAC, version 2 body", seal(K, body({ version: 2 })), "bad-ticket");
  add("valid MAC, trailing byte in the body", seal(K, body({ trailing: new Uint8Array([0]) })), "bad-ticket");
  add("valid MAC, 31-byte peer key", seal(K, body({ peerKey: PEER_KEY.subarray(0, 31) })), "bad-ticket");
  add("valid MAC, 15-byte id", seal(K, body({ id: ID.subarray(0, 15) })), "bad-ticket");
  add("valid MAC, invalid UTF-8 host", seal(K, body({ host: new Uint8Array([0xff]) })), "bad-ticket");
  add("valid MAC, body of one byte", seal(K, new Uint8Array([1])), "bad-ticket");
  return cases;
}

if (import.meta.main) {
  const file = new URL("./tickets.json", import.meta.url);
  const doc = {
    description:
      "im ticket vectors (PROTOCOL.md Tickets). openTicket(keys, ticket, { self, expectedHost, now }) must give `expect`. Generated by generate_tickets.ts.",
    cases: buildTicketVectors(),
  };
  await Deno.writeTextFile(file, JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote ${doc.cases.length} cases to ${file.pathname}`);
}
