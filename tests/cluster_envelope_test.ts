/**
 * The cluster's envelope (PROTOCOL.md section 11.2): its layout and keys
 * recomputed from the section's text, and each check of `openEnvelope` in
 * order, each failing when its rule is broken.
 * @module
 */

import assert from "node:assert/strict";
import { deriveKey, hmacSha256, mdcfbEncrypt } from "../lib/crypto/mod.ts";
import {
  ClusterKeys,
  ENVELOPE_WINDOW,
  EnvelopeWindow,
  openEnvelope,
  sealEnvelope,
} from "../lib/proto/mod.ts";
import { concat, ProtocolError, utf8 } from "../lib/util/mod.ts";

const KEY = new Uint8Array(32).map((_, i) => i + 1);
const BOOT = new Uint8Array(8).fill(0xb0);
const SUBJECT = "im.team.node.n2";
const NOW = 1_796_000_000_000;
const keys = new ClusterKeys(KEY);

const seal = (
  seq: number,
  o: Partial<Parameters<typeof sealEnvelope>[1]> = {},
) =>
  sealEnvelope(keys, {
    node: "n1",
    boot: BOOT,
    seq,
    time: NOW,
    subject: SUBJECT,
    payload: utf8(`{"t":"deliver","n":${seq}}`),
    ...o,
  });

const open = (
  b: Uint8Array,
  window = new EnvelopeWindow(),
  subject = SUBJECT,
  now = NOW,
) => openEnvelope(keys, b, { subject, now, window });

Deno.test("an envelope is the section 11.2 layout, its keys and tag recomputed from the spec's text", async () => {
  const payload = utf8('{"t":"deliver","n":1}');
  const env = seal(1);
  const empty = new Uint8Array(0);
  const enc = await deriveKey(KEY, empty, "im v1 cluster enc");
  const ivk = await deriveKey(KEY, empty, "im v1 cluster iv");
  const mac = await deriveKey(KEY, empty, "im v1 cluster mac");
  const header = concat(
    new Uint8Array([1, 2]),
    utf8("n1"),
    BOOT,
    new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1]),
    new Uint8Array(new BigUint64Array([BigInt(NOW)]).buffer).reverse(),
  );
  const ct = mdcfbEncrypt(enc, hmacSha256(ivk, header), payload);
  const subject = utf8(SUBJECT);
  const tag = hmacSha256(
    mac,
    concat(new Uint8Array([subject.length]), subject, header, ct),
  );
  assert.deepEqual(env, concat(header, ct, tag));
  const opened = open(env);
  assert.deepEqual(opened.payload, payload);
  assert.equal(opened.node, "n1");
  assert.equal(opened.seq, 1);
  assert.equal(opened.time, NOW);
});

Deno.test("openEnvelope(): another key, another subject, or any flipped bit is cluster-forged; the payload is never returned", () => {
  const env = seal(1);
  assert.throws(
    () =>
      openEnvelope(new ClusterKeys(new Uint8Array(32)), env, {
        subject: SUBJECT,
        now: NOW,
        window: new EnvelopeWindow(),
      }),
    { code: "cluster-forged" },
  );
  assert.throws(() => open(env, undefined, "im.team.node.n3"), {
    code: "cluster-forged",
  });
  for (let bit = 8 * 3; bit < env.length * 8; bit += 7) {
    const b = new Uint8Array(env);
    b[bit >> 3]! ^= 1 << (bit & 7);
    assert.throws(() => open(b), (e: unknown) =>
      e instanceof ProtocolError &&
      ["cluster-forged", "cluster-malformed"].includes(e.code));
  }
});

Deno.test("openEnvelope(): checks in order: malformed, forged, stale, replayed", () => {
  assert.throws(() => open(new Uint8Array(5)), { code: "cluster-malformed" });
  assert.throws(() => open(concat(new Uint8Array([2]), seal(1).subarray(1))), {
    code: "cluster-malformed",
  });
  // Stale, and a copy: stale decides (the window is not touched).
  const old = seal(1, { time: NOW - 120_001 });
  const w = new EnvelopeWindow();
  assert.throws(() => open(old, w), { code: "cluster-stale" });
  assert.throws(() => open(seal(2, { time: NOW + 120_001 }), w), {
    code: "cluster-stale",
  });
  assert.equal(open(seal(1), w).seq, 1);
  assert.throws(() => open(seal(1), w), { code: "cluster-replayed" });
  // A forged copy of a seen envelope is forged, not replayed.
  const forged = new Uint8Array(seal(1));
  forged[forged.length - 1]! ^= 1;
  assert.throws(() => open(forged, w), { code: "cluster-forged" });
});

Deno.test("EnvelopeWindow: each (node, boot, seq) once, out of order within 1,024, older refused; another boot or node has its own", () => {
  const w = new EnvelopeWindow();
  assert.ok(w.take("n1", BOOT, 5));
  assert.ok(w.take("n1", BOOT, 3));
  assert.ok(!w.take("n1", BOOT, 3));
  assert.ok(w.take("n1", BOOT, 5 + ENVELOPE_WINDOW));
  assert.ok(!w.take("n1", BOOT, 5), "seen");
  assert.ok(!w.take("n1", BOOT, 4), "older than the window");
  assert.ok(w.take("n1", new Uint8Array(8), 4), "another boot");
  assert.ok(w.take("n2", BOOT, 4), "another node");
  w.forget("n1");
  assert.ok(w.take("n1", BOOT, 3));
});

Deno.test("sealEnvelope() refuses a bad node name, boot id, seq or time; ClusterKeys a key of another length", () => {
  assert.throws(() => seal(1, { node: "bad name" }), {
    code: "cluster-malformed",
  });
  assert.throws(() => seal(1, { boot: new Uint8Array(7) }), {
    code: "cluster-malformed",
  });
  assert.throws(() => seal(0), { code: "cluster-malformed" });
  assert.throws(() => seal(1, { time: -1 }), { code: "cluster-malformed" });
  assert.throws(() => new ClusterKeys(new Uint8Array(31)), {
    code: "bad-length",
  });
});
