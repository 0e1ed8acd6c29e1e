import assert from "node:assert/strict";
import { ProtocolError, utf8 } from "../lib/util/mod.ts";
import {
  answerTo,
  bucketOf,
  CLIENT_TO_SERVER,
  decodeClientToServer,
  decodeMessage,
  decodePeerToPeer,
  decodeServerToClient,
  encodeMessage,
  MAX_ACK_COUNT,
  MAX_LIST_LIMIT,
  MAX_REQUEST_ID,
  type Message,
  padToBucket,
  PEER_TO_PEER,
  SERVER_TO_CLIENT,
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
    identity: "AA==",
  },
  { t: "refused", peer: "A", reason: "not-hosting", message: "x" },
  { t: "msg", id: "1", text: "héllo ✓" },
  { t: "ack", id: "1" },
  {
    t: "publish",
    identityKey: "AA==",
    signedPrekey: "AA==",
    oneTimePrekeys: ["AA==", "AQ=="],
  },
  { t: "mailbox", window: 256 },
  {
    t: "mail-ack",
    upTo: 17,
    delivered: [{ seq: 17, proof: "AA==" }],
  },
  {
    t: "receipt",
    seq: 0,
    id: "00",
    to: "B",
    status: "delivered",
    at: 1,
    proof: "",
  },
  { t: "mail", seq: 3, from: "A", at: 1, mail: "AA==" },
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
  [
    "one-time prekeys that are not all strings",
    '{"t":"publish","identityKey":"","signedPrekey":"","oneTimePrekeys":["a",1]}',
  ],
  [
    "a delivered proof without its seq",
    '{"t":"mail-ack","upTo":1,"delivered":[{"proof":"AA=="}]}',
  ],
  [
    "a delivered entry that is null",
    '{"t":"mail-ack","upTo":1,"delivered":[null]}',
  ],
  [
    "an unknown receipt status",
    '{"t":"receipt","seq":0,"id":"00","to":"B","status":"read","at":1,"proof":""}',
  ],
  [
    "a mail whose sender breaks rule 2.9",
    '{"t":"mail","seq":1,"from":"../A","at":1,"mail":""}',
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

Deno.test("no message type means two things: a name used in two directions has the same fields in both", () => {
  // decodeMessage reads every direction at once (a peer session's codec):
  // a name with two meanings would decode as only one of them.
  const seen = new Map<string, string>();
  for (
    const schema of [CLIENT_TO_SERVER, SERVER_TO_CLIENT, PEER_TO_PEER] as Array<
      Record<string, Record<string, string>>
    >
  ) {
    for (const [t, fields] of Object.entries(schema)) {
      const shape = JSON.stringify(fields);
      assert.equal(seen.get(t) ?? shape, shape, `"${t}" has two shapes`);
      seen.set(t, shape);
    }
  }
});

Deno.test("decodeMessage() rejects invalid UTF-8 with ProtocolError bad-utf8", () => {
  assert.throws(
    () => decodeMessage(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])),
    (e) => e instanceof ProtocolError && e.code === "bad-utf8",
  );
});

// PROTOCOL.md section 5: each direction has its own schema, and a message
// of another direction is refused by the reader of this one.
Deno.test("each direction's decoder reads its own messages and refuses the others' with bad-message", () => {
  const cases: Array<
    [string, (b: Uint8Array) => unknown, Message[], Message[]]
  > = [
    [
      "client -> server",
      decodeClientToServer,
      [{ t: "list" }, { t: "session", peer: "A", req: 3 }],
      [{
        t: "welcome",
        user: "A",
        serverFingerprint: "x",
        maxFrame: 65536,
        now: 1,
      }, {
        t: "ack",
        id: "1",
      }],
    ],
    [
      "server -> client",
      decodeServerToClient,
      [{ t: "users", users: [], more: 0, req: 9 }, {
        t: "closing",
        reason: "shutdown",
        message: "x",
      }],
      [{ t: "list" }, { t: "msg", id: "1", text: "x" }],
    ],
    [
      "peer <-> peer",
      decodePeerToPeer,
      [{ t: "msg", id: "1", text: "hi" }, { t: "ack", id: "1" }],
      [{ t: "list" }, { t: "error", code: "x", message: "y" }],
    ],
  ];
  for (const [dir, decode, own, others] of cases) {
    for (const m of own) {
      assert.deepEqual(decode(encodeMessage(m)), m, `${dir} reads ${m.t}`);
    }
    for (const m of others) {
      assert.throws(
        () => decode(encodeMessage(m)),
        (e) => e instanceof ProtocolError && e.code === "bad-message",
        `${dir} refuses ${m.t}`,
      );
    }
  }
});

// PROTOCOL.md section 5.1: a request id is an integer 1..2^32-1, carried only
// between client and server; anything else in `req` is refused.
Deno.test("req: kept when it is an integer from 1 to 2^32-1 on a client or server message", () => {
  for (const req of [1, 42, MAX_REQUEST_ID]) {
    assert.deepEqual(decodeClientToServer(utf8(`{"t":"list","req":${req}}`)), {
      t: "list",
      req,
    });
    assert.equal(
      decodeServerToClient(
        utf8(`{"t":"error","code":"x","message":"y","req":${req}}`),
      ).req,
      req,
    );
  }
});

Deno.test("req: zero, negative, fractional, too large, a string or on a peer message is bad-message", () => {
  const bad = [
    '{"t":"list","req":0}',
    '{"t":"list","req":-1}',
    '{"t":"list","req":1.5}',
    '{"t":"list","req":4294967296}',
    '{"t":"list","req":"1"}',
    '{"t":"list","req":null}',
  ];
  for (const text of bad) {
    assert.throws(
      () => decodeClientToServer(utf8(text)),
      (e) => e instanceof ProtocolError && e.code === "bad-message",
      text,
    );
  }
  assert.throws(
    () => decodePeerToPeer(utf8('{"t":"ack","id":"1","req":1}')),
    (e) => e instanceof ProtocolError && e.code === "bad-message",
  );
});

// PROTOCOL.md section 6, "Receipts": an `ack`'s `count` is an integer from 1
// to 2^32-1, or absent (1, the receipt of one message, as earlier versions
// sent it); anything else is refused.
Deno.test("ack count: kept from 1 to 2^32-1, absent when absent; zero, negative, fractional, too large, a string or null is bad-message", () => {
  assert.deepEqual(decodePeerToPeer(utf8('{"t":"ack","id":"9"}')), {
    t: "ack",
    id: "9",
  });
  for (const count of [1, 64, MAX_ACK_COUNT]) {
    assert.deepEqual(
      decodePeerToPeer(utf8(`{"t":"ack","id":"9","count":${count}}`)),
      { t: "ack", id: "9", count },
    );
  }
  for (const count of ["0", "-1", "1.5", "4294967296", '"2"', "null", "true"]) {
    assert.throws(
      () => decodePeerToPeer(utf8(`{"t":"ack","id":"9","count":${count}}`)),
      (e) => e instanceof ProtocolError && e.code === "bad-message",
      count,
    );
  }
  // The largest ack `im` could send still fits the smallest padding bucket.
  assert.equal(
    padToBucket(
      encodeMessage({
        t: "ack",
        id: String(Number.MAX_SAFE_INTEGER),
        count: MAX_ACK_COUNT,
      }),
      Infinity,
    ).length,
    64,
  );
});

Deno.test("answerTo() copies the request's id onto the answer, and adds none when the request had none", () => {
  const users = { t: "users" as const, users: [], more: 0 };
  assert.equal(answerTo({ t: "list", req: 77 }, users).req, 77);
  assert.equal("req" in answerTo({ t: "list" }, users), false);
});

// PROTOCOL.md section 6, "Padding": a peer message is padded with spaces,
// which JSON allows after a value (RFC 8259 section 2), so the decoders need
// no change.
Deno.test("a message padded with spaces to its size bucket decodes to the same message, in every decoder that reads it", () => {
  for (const m of GOOD) {
    const padded = padToBucket(encodeMessage(m), Infinity);
    assert.equal(padded.length, bucketOf(encodeMessage(m).length));
    assert.equal(padded.at(-1), 0x20);
    assert.deepEqual(decodeMessage(padded), m);
  }
  const peer: Message[] = [{ t: "msg", id: "1", text: "héllo ✓" }, {
    t: "ack",
    id: "1",
  }];
  for (const m of peer) {
    const padded = padToBucket(encodeMessage(m), Infinity);
    assert.equal(padded.length, 64);
    assert.deepEqual(decodePeerToPeer(padded), m);
  }
});

Deno.test("padding must be JSON whitespace: a message followed by NUL bytes or other text is bad-message", () => {
  const m = encodeMessage({ t: "ack", id: "1" });
  for (const tail of [[0], [0x20, 0], [0x78], [0x7b, 0x7d]]) {
    assert.throws(
      () => decodePeerToPeer(new Uint8Array([...m, ...tail])),
      (e) => e instanceof ProtocolError && e.code === "bad-message",
    );
  }
});

// PROTOCOL.md 5.3: a `list` may ask for a page; each field is optional and
// checked when present.
Deno.test("list: prefix, after and limit are optional and kept; a bad one of each is bad-message", () => {
  assert.deepEqual(decodeClientToServer(utf8('{"t":"list"}')), { t: "list" });
  assert.deepEqual(
    decodeClientToServer(
      utf8('{"t":"list","prefix":"al","after":"al_9","limit":100,"req":2}'),
    ),
    { t: "list", prefix: "al", after: "al_9", limit: 100, req: 2 },
  );
  assert.deepEqual(
    decodeClientToServer(utf8(`{"t":"list","limit":${MAX_LIST_LIMIT}}`)),
    { t: "list", limit: MAX_LIST_LIMIT },
  );
  for (
    const bad of [
      '{"t":"list","prefix":""}',
      '{"t":"list","prefix":"a b"}',
      '{"t":"list","prefix":"\\u001b[2J"}',
      `{"t":"list","prefix":"${"a".repeat(33)}"}`,
      '{"t":"list","prefix":7}',
      '{"t":"list","after":"a/b"}',
      '{"t":"list","after":""}',
      '{"t":"list","limit":0}',
      `{"t":"list","limit":${MAX_LIST_LIMIT + 1}}`,
      '{"t":"list","limit":1.5}',
      '{"t":"list","limit":"10"}',
    ]
  ) {
    assert.throws(
      () => decodeClientToServer(utf8(bad)),
      (e) => e instanceof ProtocolError && e.code === "bad-message",
      bad,
    );
  }
});
