/**
 * The sealed values a cluster keeps in NATS (PROTOCOL.md 11.6,
 * lib/proto/cluster_store.ts): the layout and keys as specified, the
 * subject bound by the tag, `at` and `counted` inside it, and every
 * alteration refused with one of two codes.
 * @module
 */

import assert from "node:assert/strict";
import {
  ClusterKeys,
  openStored,
  sealEnvelope,
  sealStored,
  STORED_HEADER_BYTES,
  StoreKeys,
} from "../lib/proto/mod.ts";
import { deriveKey, hmacSha256, mdcfbDecrypt } from "../lib/crypto/mod.ts";
import { concat, utf8 } from "../lib/util/mod.ts";

const KEY = new Uint8Array(32).map((_, i) => i + 1);
const keys = new StoreKeys(KEY);
const SUBJECT = "im.team.mail.bob";
const value = utf8("a sealed mail record");
const sealed = () =>
  sealStored(keys, { subject: SUBJECT, at: 1234, counted: true, value });

Deno.test("sealStored() follows 11.6: its labels, header, IV and tag over the subject", async () => {
  const v = sealed();
  const empty = new Uint8Array(0);
  const enc = await deriveKey(KEY, empty, "im v1 cluster store enc");
  const ivk = await deriveKey(KEY, empty, "im v1 cluster store iv");
  const mac = await deriveKey(KEY, empty, "im v1 cluster store mac");
  const header = v.subarray(0, STORED_HEADER_BYTES);
  assert.deepEqual([...header.subarray(0, 10)], [
    1,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    4,
    210,
  ]);
  const ct = v.subarray(STORED_HEADER_BYTES, v.length - 32);
  const s = utf8(SUBJECT);
  assert.deepEqual(
    v.subarray(v.length - 32),
    hmacSha256(mac, concat(new Uint8Array([s.length]), s, header, ct)),
  );
  assert.deepEqual(mdcfbDecrypt(enc, hmacSha256(ivk, header), ct), value);
  assert.notDeepEqual(sealed(), v, "a fresh nonce per seal");
  const o = openStored(keys, v, SUBJECT);
  assert.deepEqual(o, { at: 1234, counted: true, value });
  const unc = sealStored(keys, { subject: SUBJECT, at: 5, value });
  assert.equal(openStored(keys, unc, SUBJECT).counted, false);
});

Deno.test("openStored() refuses a value moved to another user's subject or another cluster's (store-forged)", () => {
  for (
    const subject of [
      "im.team.mail.eve",
      "im.other.mail.bob",
      "$KV.im_team_prekeys.certs.bob",
    ]
  ) {
    assert.throws(() => openStored(keys, sealed(), subject), {
      code: "store-forged",
    });
  }
});

Deno.test("openStored() refuses one flipped bit anywhere: the version as malformed, the rest (counted included) as forged; an unknown flag as malformed", () => {
  const v = sealed();
  for (let i = 0; i < v.length; i++) {
    const bad = v.slice();
    bad[i] = bad[i]! ^ 1;
    assert.throws(() => openStored(keys, bad, SUBJECT), {
      code: i === 0 ? "store-malformed" : "store-forged",
    }, `byte ${i}`);
  }
  const flag = v.slice();
  flag[1] = 3;
  assert.throws(() => openStored(keys, flag, SUBJECT), {
    code: "store-malformed",
  });
});

Deno.test("openStored() refuses another key, a cluster envelope, a truncated value and junk", () => {
  const other = new StoreKeys(new Uint8Array(32).fill(9));
  assert.throws(() => openStored(other, sealed(), SUBJECT), {
    code: "store-forged",
  });
  const env = sealEnvelope(new ClusterKeys(KEY), {
    node: "n1",
    boot: new Uint8Array(8),
    seq: 1,
    time: 1,
    subject: SUBJECT,
    payload: value,
  });
  assert.throws(() => openStored(keys, env, SUBJECT));
  const v = sealed();
  assert.throws(() => openStored(keys, v.subarray(0, v.length - 1), SUBJECT), {
    code: "store-forged",
  });
  for (
    const junk of [new Uint8Array(0), new Uint8Array(57), v.subarray(0, 57)]
  ) {
    assert.throws(() => openStored(keys, junk, SUBJECT), {
      code: "store-malformed",
    });
  }
  assert.throws(() => new StoreKeys(new Uint8Array(16)), {
    code: "bad-length",
  });
});
