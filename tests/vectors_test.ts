/**
 * Runs `tests/vectors/records.json` and `tests/vectors/tickets.json`: every
 * case names its expected outcome, failures included. The files are checked
 * to be exactly what their generators build from fixed inputs.
 */
import assert from "node:assert/strict";
import { RecordError, TicketError } from "../lib/util/mod.ts";
import {
  RecordOpener,
  RecordSealer,
  type RecordType,
} from "../lib/record/mod.ts";
import { openTicket } from "../lib/proto/mod.ts";
import { assertThrowsIm } from "./_helpers.ts";
import {
  buildRecordVectors,
  type RecordVector,
} from "./vectors/generate_records.ts";
import {
  buildTicketVectors,
  type TicketVector,
} from "./vectors/generate_tickets.ts";

async function load<T>(name: string): Promise<T[]> {
  const text = await Deno.readTextFile(
    new URL(`./vectors/${name}`, import.meta.url),
  );
  return (JSON.parse(text) as { cases: T[] }).cases;
}

const records = await load<RecordVector>("records.json");
const tickets = await load<TicketVector>("tickets.json");

const hex = (s: string) => Uint8Array.fromHex(s);

Deno.test("records.json is exactly what generate_records.ts builds (reproducible)", () => {
  assert.deepEqual(records, buildRecordVectors());
});

Deno.test("tickets.json is exactly what generate_tickets.ts builds (reproducible)", () => {
  assert.deepEqual(tickets, buildTicketVectors());
});

Deno.test("the vector files cover every verdict", () => {
  const r = new Set(records.map((c) => c.expect));
  for (const e of ["success", "tampered", "replayed", "stale", "malformed"]) {
    assert.ok(r.has(e as never), `records: ${e}`);
  }
  const t = new Set(tickets.map((c) => c.expect));
  for (
    const e of ["success", "bad-ticket", "misbound", "expired", "bad-expiry"]
  ) assert.ok(t.has(e as never), `tickets: ${e}`);
  assert.ok(records.length >= 40 && tickets.length >= 25);
});

for (const v of records) {
  Deno.test(`records.json: ${v.name} -> ${v.expect}`, () => {
    const keys = {
      enc: hex(v.keys.enc),
      iv: hex(v.keys.iv),
      mac: hex(v.keys.mac),
    };
    const opener = new RecordOpener(keys, { windowMs: v.windowMs });
    for (const [i, b] of v.before.entries()) {
      opener.open(hex(b), v.now); // must succeed
      assert.ok(opener.nextSeq > 0n, `before[${i}]`);
    }
    const before = opener.nextSeq;
    if (v.expect === "success") {
      const got = opener.open(hex(v.record), v.now);
      assert.equal(got.plaintext.toHex(), v.plaintext);
      assert.equal(got.type, v.type);
      assert.equal(got.seq.toString(), v.seq);
      assert.equal(got.timestamp, v.timestamp);
      assert.equal(got.lost.toString(), v.lost);
      // Sealing is deterministic given keys, seq, timestamp and plaintext.
      const again = new RecordSealer(keys, BigInt(v.seq!)).seal(
        v.type as RecordType,
        hex(v.plaintext!),
        v.timestamp!,
      );
      assert.equal(again.toHex(), v.record);
    } else {
      assertThrowsIm(
        () => opener.open(hex(v.record), v.now),
        RecordError,
        v.expect,
      );
      assert.equal(
        opener.nextSeq,
        before,
        "a refused record does not move the counter",
      );
    }
  });
}

for (const v of tickets) {
  Deno.test(`tickets.json: ${v.name} -> ${v.expect}`, () => {
    const keys = { enc: hex(v.keys.enc), mac: hex(v.keys.mac) };
    const check = { self: v.self, expectedHost: v.expectedHost, now: v.now };
    if (v.expect === "success") {
      const t = openTicket(keys, hex(v.ticket), check);
      assert.equal(t.id.toHex(), v.id);
      assert.equal(t.host, v.host);
      assert.equal(t.joiner, v.joiner);
      assert.equal(t.expiresAt, v.expiresAt);
      assert.equal(t.peerKey.toHex(), v.peerKey);
    } else {
      assertThrowsIm(
        () => openTicket(keys, hex(v.ticket), check),
        TicketError,
        v.expect,
      );
    }
  });
}
