/**
 * PROTOCOL.md section 5 states the type of every message field, and the
 * statement cannot drift from the code: its tables are generated from the
 * schemas the decoder checks with (`tests/spec_tables.ts`), and this test
 * fails when the block in PROTOCOL.md is not what they render now (issue 17
 * item 7). It also checks the prose around the tables against the decoder,
 * and the encodings the tables name against what a real server sends.
 */

import assert from "node:assert/strict";
import { ProtocolError, utf8 } from "../lib/util/mod.ts";
import {
  CLIENT_TO_SERVER,
  decodeClientToServer,
  decodePeerToPeer,
  decodeServerToClient,
  MESSAGE_DOCS,
  PEER_TO_PEER,
  SERVER_TO_CLIENT,
} from "../lib/proto/mod.ts";
import { assertThrowsIm } from "./_helpers.ts";
import { withScope } from "./_fixtures.ts";
import { isMsg } from "./attack/_setup.ts";
import {
  BEGIN,
  END,
  generatedBlock,
  renderMessageTables,
  withFreshTables,
} from "./spec_tables.ts";

const protocol = await Deno.readTextFile(
  new URL("../PROTOCOL.md", import.meta.url),
);

Deno.test("PROTOCOL.md's message tables are exactly what the schemas render (run `deno task spec` after changing a schema or its docs)", () => {
  assert.equal(generatedBlock(protocol), renderMessageTables());
  assert.equal(withFreshTables(protocol), protocol);
});

Deno.test("the generated tables name every message and every field of the three schemas, each with a type", () => {
  const block = renderMessageTables();
  for (const schema of [CLIENT_TO_SERVER, SERVER_TO_CLIENT, PEER_TO_PEER]) {
    for (const [t, fields] of Object.entries(schema)) {
      const row = block.split("\n").find((l) => l.startsWith(`| \`${t}\``));
      assert.ok(row, `a row for ${t}`);
      for (const f of Object.keys(fields)) {
        assert.match(row, new RegExp(`\`${f}\` \\(`), `${t}.${f} has a type`);
      }
    }
  }
  // The examples of issue 17: the encodings are stated, not implied.
  assert.match(block, /`ticket` \(string\): base64/);
  assert.match(block, /`ticketId` \(string\): hex, 32 lowercase digits/);
  assert.match(block, /`key` \(string\): base64 \(padded\) of the 32-byte/);
  assert.match(block, /`id` \(string\): opaque/);
  assert.match(block, /`data` \(string\): base64 .* `kind \\\|\\\| body`/);
});

Deno.test("the docs of the schemas name exactly the schemas' messages and fields", () => {
  const pairs = [
    [CLIENT_TO_SERVER, MESSAGE_DOCS.CLIENT_TO_SERVER],
    [SERVER_TO_CLIENT, MESSAGE_DOCS.SERVER_TO_CLIENT],
    [PEER_TO_PEER, MESSAGE_DOCS.PEER_TO_PEER],
  ] as const;
  for (const [schema, docs] of pairs) {
    assert.deepEqual(Object.keys(docs), Object.keys(schema));
    for (const [t, fields] of Object.entries(schema)) {
      const doc = (docs as Record<string, { fields: object }>)[t]!;
      assert.deepEqual(Object.keys(doc.fields), Object.keys(fields), t);
    }
  }
});

Deno.test("generatedBlock() needs exactly one pair of markers", () => {
  assert.throws(() => generatedBlock("no markers"));
  assert.throws(() => generatedBlock(`${END} ${BEGIN}`));
  assert.throws(() => generatedBlock(`${BEGIN}${END}${BEGIN}${END}`));
  assert.equal(generatedBlock(`a${BEGIN}x${END}b`), "x");
  // A stale block is replaced, the rest kept.
  const fresh = withFreshTables(
    `head\n${BEGIN}\nOLD-BLOCK-SENTINEL\n${END}\ntail`,
  );
  assert.ok(
    fresh.startsWith(`head\n${BEGIN}`) && fresh.endsWith(`${END}\ntail`),
  );
  assert.ok(!fresh.includes("OLD-BLOCK-SENTINEL"));
});

Deno.test("the rules PROTOCOL.md section 5 states around the tables hold in the decoder", () => {
  const enc = (o: unknown) => utf8(JSON.stringify(o));
  // Fields not listed are ignored: dropped, never passed on.
  assert.deepEqual(
    decodeClientToServer(enc({ t: "list", extra: 1, text: "x" })),
    { t: "list" },
  );
  // A listed field that is missing or of another type is bad-message.
  for (
    const bad of [
      { t: "session" },
      { t: "session", peer: 7 },
      { t: "session", peer: "../etc" },
      { t: "relay", peer: "A" },
      { t: "cancel", ticketId: 5 },
    ]
  ) {
    assertThrowsIm(
      () => decodeClientToServer(enc(bad)),
      ProtocolError,
      "bad-message",
    );
  }
  assertThrowsIm(
    () =>
      decodeServerToClient(
        enc({ t: "welcome", user: "A", serverFingerprint: "x", maxFrame: "1" }),
      ),
    ProtocolError,
    "bad-message",
  );
  // Another direction's message is bad-message.
  assertThrowsIm(
    () => decodePeerToPeer(enc({ t: "list" })),
    ProtocolError,
    "bad-message",
  );
  // Not UTF-8: bad-utf8.
  assertThrowsIm(
    () => decodeClientToServer(Uint8Array.of(0xff, 0xfe)),
    ProtocolError,
    "bad-utf8",
  );
  // req: an integer 1..2^32-1, not on peer messages.
  assert.equal(decodeClientToServer(enc({ t: "list", req: 1 })).req, 1);
  for (const req of [0, 1.5, 2 ** 32, "1"]) {
    assertThrowsIm(
      () => decodeClientToServer(enc({ t: "list", req })),
      ProtocolError,
      "bad-message",
    );
  }
  assertThrowsIm(
    () => decodePeerToPeer(enc({ t: "ack", id: "1", req: 1 })),
    ProtocolError,
    "bad-message",
  );
});

Deno.test("a real grant and join carry what the tables say: key base64 of 32 bytes, ticket base64 (the same in both), ticketId 32 lowercase hex digits, expiresAt an integer", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const a = await s.login(port, "A");
    const b = await s.login(port, "B");
    await a.channel.send({ t: "host", addr: "127.0.0.1:1", req: 1 });
    await a.tap.waitFor(isMsg("hosting"));
    await b.channel.send({ t: "session", peer: "A", req: 1 });
    const g = await a.tap.waitFor(isMsg("grant"));
    const j = await b.tap.waitFor(isMsg("join"));
    assert.ok(g.kind === "message" && g.msg.t === "grant");
    assert.ok(j.kind === "message" && j.msg.t === "join");
    const base64 = /^[A-Za-z0-9+/]+={0,2}$/;
    assert.match(g.msg.key, base64);
    assert.equal(g.msg.key.length % 4, 0, "padded");
    assert.equal(Uint8Array.fromBase64(g.msg.key).length, 32);
    assert.match(g.msg.ticket, base64);
    assert.equal(g.msg.ticket.length % 4, 0, "padded");
    assert.match(g.msg.ticketId, /^[0-9a-f]{32}$/);
    assert.equal(j.msg.ticketId, g.msg.ticketId);
    assert.match(j.msg.ticket, base64);
    assert.equal(
      j.msg.ticket,
      g.msg.ticket,
      "the join's ticket is the grant's",
    );
    assert.ok(Number.isInteger(g.msg.expiresAt));
    assert.equal(j.msg.expiresAt, g.msg.expiresAt);
    assert.equal(j.msg.addr, "127.0.0.1:1");
  });
});
