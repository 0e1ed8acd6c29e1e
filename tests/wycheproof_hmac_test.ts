/**
 * Wycheproof `hmac_sha256_test.json` against our {@link HmacSha256} and
 * against WebCrypto HMAC imported the way the project imports it.
 *
 * The vectors are not in this repository: the directory comes from
 * `IM_WYCHEPROOF_DIR` (absolute, or relative to the working directory),
 * default `../shared/vectors/wycheproof` relative to the repository root.
 * When the file is absent the tests are reported as ignored, never passed.
 */
import assert from "node:assert/strict";
import { constantTimeEqual } from "../lib/util/mod.ts";
import { HmacSha256 } from "../lib/crypto/mod.ts";
import { loadVectors } from "./_wycheproof.ts";

interface MacCase {
  tcId: number;
  comment: string;
  key: string;
  msg: string;
  tag: string;
  result: "valid" | "invalid" | "acceptable";
}
interface MacGroup {
  keySize: number;
  tagSize: number;
  tests: MacCase[];
}
const data = loadVectors<MacGroup>("hmac_sha256_test.json");
const ignore = data === undefined;
const groups = data?.testGroups ?? [];

/** Every case, with its group's tag size in bytes. */
function* cases(): Generator<MacCase & { tagBytes: number }> {
  for (const g of groups) {
    for (const t of g.tests) yield { ...t, tagBytes: g.tagSize / 8 };
  }
}

Deno.test({
  name:
    "Wycheproof hmac_sha256_test.json is HMACSHA256 and holds all its cases",
  ignore,
  fn() {
    assert.equal(data!.algorithm, "HMACSHA256");
    let n = 0;
    for (const _ of cases()) n++;
    assert.equal(n, data!.numberOfTests);
    assert.ok(n > 100);
  },
});

Deno.test({
  name:
    "HmacSha256 matches every valid Wycheproof tag and rejects every modified one",
  ignore,
  fn() {
    let valid = 0;
    let invalid = 0;
    for (const t of cases()) {
      const h = new HmacSha256(Uint8Array.fromHex(t.key));
      const full = h.mac(Uint8Array.fromHex(t.msg));
      h.wipe();
      const tag = Uint8Array.fromHex(t.tag);
      assert.equal(tag.length, t.tagBytes, `tcId ${t.tcId}: tag size`);
      // Compare the truncated tag as the group's tagSize says.
      const ok = constantTimeEqual(full.subarray(0, t.tagBytes), tag);
      if (t.result === "valid") {
        assert.ok(ok, `tcId ${t.tcId} (${t.comment}) should verify`);
        valid++;
      } else {
        assert.ok(!ok, `tcId ${t.tcId} (${t.comment}) must not verify`);
        invalid++;
      }
      // The project compares full 32-byte tags only: a truncated tag, valid
      // or not, never passes a full-length comparison.
      if (t.tagBytes < 32 || t.result !== "valid") {
        assert.ok(!constantTimeEqual(full, tag), `tcId ${t.tcId} full-length`);
      }
    }
    assert.ok(valid > 0 && invalid > 0);
  },
});

Deno.test({
  name:
    "WebCrypto HMAC signs every valid Wycheproof case and verify() rejects modified and truncated tags",
  ignore,
  async fn() {
    let checked = 0;
    for (const t of cases()) {
      // As the project imports an HMAC key: raw, SHA-256, non-extractable.
      const key = await crypto.subtle.importKey(
        "raw",
        Uint8Array.fromHex(t.key),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["sign", "verify"],
      );
      const msg = Uint8Array.fromHex(t.msg);
      const tag = Uint8Array.fromHex(t.tag);
      const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, msg));
      const verified = await crypto.subtle.verify("HMAC", key, tag, msg);
      const prefixOk = constantTimeEqual(sig.subarray(0, t.tagBytes), tag);
      if (t.result === "valid") {
        assert.ok(prefixOk, `tcId ${t.tcId} (${t.comment}) should match`);
        // verify() compares full length: only untruncated tags pass.
        assert.equal(verified, t.tagBytes === 32, `tcId ${t.tcId} verify`);
      } else {
        assert.ok(!prefixOk, `tcId ${t.tcId} (${t.comment}) must not match`);
        assert.ok(!verified, `tcId ${t.tcId} (${t.comment}) must not verify`);
      }
      // Our implementation agrees with WebCrypto on the full tag.
      assert.equal(
        new HmacSha256(Uint8Array.fromHex(t.key)).mac(msg).toHex(),
        sig.toHex(),
        `tcId ${t.tcId}: ours vs WebCrypto`,
      );
      checked++;
    }
    assert.equal(checked, data!.numberOfTests);
  },
});
