import assert from "node:assert/strict";
import { ProtocolError, utf8 } from "../lib/util/mod.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
} from "../lib/proto/mod.ts";

const GOOD: Message[] = [
  { t: "list" },
  { t: "host", addr: "127.0.0.1:5000" },
  { t: "session", peer: "A" },
  {
    t: "users",
    users: [{ name: "A", state: "HOSTING" }, { name: "B", state: "BUSY" }],
    more: 3,
  },
  {
    t: "grant",
    peer: "B",
    key: "AA==",
    ticket: "AA==",
    ticketId: "00",
    expiresAt: 5,
  },
  { t: "refused", peer: "A", reason: "not-hosting", message: "x" },
  { t: "msg", id: "1", text: "héllo ✓" },
  { t: "ack", id: "1" },
];

Deno.test("decodeMessage(encodeMessage(m)) returns m for every kind of message", () => {
  for (const m of GOOD) assert.deepEqual(decodeMessage(encodeMessage(m)), m);
});

Deno.test("decodeMessage() drops fields the schema does not name", () => {
  const m = decodeMessage(utf8('{"t":"ack","id":"1","extra":{"x":1}}'));
  assert.deepEqual(m, { t: "ack", id: "1" });
});

const BAD: Array<[string, string]> = [
  ["not JSON", "{"],
  ["an array", "[1]"],
  ["null", "null"],
  ["a number", "7"],
  ["no type", '{"id":"1"}'],
  ["an unknown type", '{"t":"nope"}'],
  ["a prototype name as type", '{"t":"__proto__"}'],
  ["toString as type", '{"t":"toString"}'],
  ["a missing field", '{"t":"session"}'],
  ["a number where a string belongs", '{"t":"session","peer":5}'],
  [
    "a string where a number belongs",
    '{"t":"join","peer":"A","addr":"x:1","ticketId":"0","expiresAt":"5"}',
  ],
  [
    "an infinite number",
    '{"t":"join","peer":"A","addr":"x:1","ticketId":"0","expiresAt":1e999}',
  ],
  ["users not a list", '{"t":"users","users":{}}'],
  [
    "a user with a bad state",
    '{"t":"users","users":[{"name":"A","state":"ASLEEP"}]}',
  ],
  ["a user entry that is null", '{"t":"users","users":[null],"more":0}'],
  ["a list without its more count", '{"t":"users","users":[]}'],
  [
    "a user entry whose name breaks rule 2.9",
    '{"t":"users","users":[{"name":"a b","state":"IDLE"}],"more":0}',
  ],
  [
    "a peer name with an escape sequence",
    '{"t":"session","peer":"A\\u001b[2J"}',
  ],
  [
    "a peer name longer than 32 characters",
    `{"t":"ended","peer":"${"x".repeat(33)}"}`,
  ],
  [
    "a welcome for a path-like user",
    '{"t":"welcome","user":"../x","serverFingerprint":"SHA256:x"}',
  ],
  [
    "an unknown refusal reason",
    '{"t":"refused","peer":"A","reason":"why","message":"x"}',
  ],
];

for (const [what, text] of BAD) {
  Deno.test(`decodeMessage() rejects ${what} with ProtocolError bad-message`, () => {
    assert.throws(
      () => decodeMessage(utf8(text)),
      (e) => e instanceof ProtocolError && e.code === "bad-message",
    );
  });
}

Deno.test("decodeMessage() rejects invalid UTF-8 with ProtocolError bad-utf8", () => {
  assert.throws(
    () => decodeMessage(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])),
    (e) => e instanceof ProtocolError && e.code === "bad-utf8",
  );
});
