/**
 * Wycheproof vectors through the project's own code paths:
 * - HKDF-SHA256 through `hkdf` (lib/kdf.ts);
 * - RSA-PSS 2048/3072, SHA-256, MGF1-SHA-256, salt 32, through
 *   `publicIdentityFromDer` / `importPssPublicFromDer` and `verifyPss`;
 * - RSA-OAEP 2048/3072, SHA-256, MGF1-SHA-256, through
 *   `privateIdentityFromDer` (or `loadPrivateIdentity` for PEM) and
 *   `decryptOaep` with each vector's label.
 * HMAC-SHA256 is covered by wycheproof_hmac_test.ts.
 *
 * The vectors are not in this repository: the directory comes from
 * `IM_WYCHEPROOF_DIR` (absolute, or relative to the working directory),
 * default `../shared/vectors/wycheproof` relative to the repository root.
 * When a file is absent its tests are reported as ignored, never passed.
 * "acceptable" cases may go either way; the outcome is printed.
 */
import assert from "node:assert/strict";
import { AuthError } from "../lib/util/mod.ts";
import {
  decryptOaep,
  hkdf,
  importOaepPrivateFromDer,
  importPssPublicFromDer,
  loadPrivateIdentity,
  loadPublicIdentity,
  privateIdentityFromDer,
  publicIdentityFromDer,
  verifyPss,
} from "../lib/crypto/mod.ts";
import { loadVectors, type VectorFile } from "./_wycheproof.ts";

type Result = "valid" | "invalid" | "acceptable";

interface HkdfCase {
  tcId: number;
  comment: string;
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
  result: Result;
}

interface PssCase {
  tcId: number;
  comment: string;
  msg: string;
  sig: string;
  result: Result;
}

interface PssGroup {
  keySize: number;
  sha: string;
  mgfSha: string;
  sLen: number;
  publicKeyDer?: string;
  publicKeyPem?: string;
  tests: PssCase[];
}

interface OaepCase {
  tcId: number;
  comment: string;
  msg: string;
  ct: string;
  label: string;
  result: Result;
}

interface OaepGroup {
  keySize: number;
  sha: string;
  mgfSha: string;
  privateKeyPkcs8?: string;
  privateKeyPem?: string;
  tests: OaepCase[];
}

const hex = (s: string) => Uint8Array.fromHex(s);

function count<G extends { tests: unknown[] }>(f: VectorFile<G>): number {
  return f.testGroups.reduce((n, g) => n + g.tests.length, 0);
}

/** Print what the implementation did with "acceptable" cases. */
function report(file: string, acceptable: string[]): void {
  if (acceptable.length > 0) {
    console.log(`${file}: acceptable cases: ${acceptable.join(", ")}`);
  }
}

// ---------------------------------------------------------------------------
// HKDF-SHA256

{
  const name = "hkdf_sha256_test.json";
  const data = loadVectors<{ tests: HkdfCase[] }>(name);
  const ignore = data === undefined;

  Deno.test({
    name: `Wycheproof ${name} is HKDF-SHA-256 and holds all its cases`,
    ignore,
    fn() {
      assert.equal(data!.algorithm, "HKDF-SHA-256");
      assert.equal(count(data!), data!.numberOfTests);
      assert.ok(data!.numberOfTests > 50);
    },
  });

  Deno.test({
    name:
      "hkdf() matches every valid Wycheproof HKDF-SHA256 case and rejects every invalid size",
    ignore,
    async fn() {
      const acceptable: string[] = [];
      let valid = 0, invalid = 0;
      for (const g of data!.testGroups) {
        for (const t of g.tests) {
          const what = `tcId ${t.tcId} (${t.comment})`;
          let okm: Uint8Array | undefined;
          try {
            okm = await hkdf(hex(t.ikm), hex(t.salt), hex(t.info), t.size);
          } catch {
            okm = undefined;
          }
          if (t.result === "valid") {
            assert.ok(okm !== undefined, `${what} should derive`);
            assert.equal(okm.toHex(), t.okm, what);
            valid++;
          } else if (t.result === "invalid") {
            assert.equal(okm, undefined, `${what} must be refused`);
            invalid++;
          } else {
            acceptable.push(
              `${t.tcId}=${okm === undefined ? "refused" : "accepted"}`,
            );
          }
        }
      }
      assert.ok(
        valid > 50 && invalid > 0,
        `valid ${valid}, invalid ${invalid}`,
      );
      report(name, acceptable);
    },
  });
}

// ---------------------------------------------------------------------------
// RSA-PSS

for (const bits of [2048, 3072]) {
  const name = `rsa_pss_${bits}_sha256_mgf1_32_test.json`;
  const data = loadVectors<PssGroup>(name);
  const ignore = data === undefined;

  Deno.test({
    name:
      `Wycheproof ${name} is RSASSA-PSS SHA-256 salt 32 and holds all its cases`,
    ignore,
    fn() {
      assert.equal(data!.algorithm, "RSASSA-PSS");
      assert.equal(count(data!), data!.numberOfTests);
      for (const g of data!.testGroups) {
        assert.equal(g.keySize, bits);
        assert.equal(g.sha, "SHA-256");
        assert.equal(g.mgfSha, "SHA-256");
        assert.equal(g.sLen, 32);
      }
    },
  });

  Deno.test({
    name:
      `verifyPss() accepts every valid and refuses every invalid Wycheproof RSA-PSS ${bits} signature, through both import paths`,
    ignore,
    async fn() {
      const acceptable: string[] = [];
      let valid = 0, invalid = 0;
      for (const g of data!.testGroups) {
        // The project's import paths: an identity (canonicalised SPKI), and the bare verify key.
        const identity = g.publicKeyDer !== undefined
          ? await publicIdentityFromDer(hex(g.publicKeyDer), name)
          : await loadPublicIdentity(g.publicKeyPem!, name);
        assert.equal(identity.bits, bits);
        const bare = await importPssPublicFromDer(identity.publicDer, name);
        for (const t of g.tests) {
          const what = `tcId ${t.tcId} (${t.comment})`;
          const sig = hex(t.sig), msg = hex(t.msg);
          const ok = await verifyPss(identity.verify, sig, msg);
          assert.equal(
            await verifyPss(bare, sig, msg),
            ok,
            `${what}: both import paths agree`,
          );
          if (t.result === "valid") {
            assert.ok(ok, `${what} should verify`);
            valid++;
          } else if (t.result === "invalid") {
            assert.ok(!ok, `${what} must not verify`);
            invalid++;
          } else {
            acceptable.push(`${t.tcId}=${ok ? "accepted" : "refused"}`);
          }
        }
      }
      assert.ok(valid > 0 && invalid > 0, `valid ${valid}, invalid ${invalid}`);
      report(name, acceptable);
    },
  });
}

// ---------------------------------------------------------------------------
// RSA-OAEP

for (const bits of [2048, 3072]) {
  const name = `rsa_oaep_${bits}_sha256_mgf1sha256_test.json`;
  const data = loadVectors<OaepGroup>(name);
  const ignore = data === undefined;

  Deno.test({
    name: `Wycheproof ${name} is RSAES-OAEP SHA-256 and holds all its cases`,
    ignore,
    fn() {
      assert.equal(data!.algorithm, "RSAES-OAEP");
      assert.equal(count(data!), data!.numberOfTests);
      for (const g of data!.testGroups) {
        assert.equal(g.keySize, bits);
        assert.equal(g.sha, "SHA-256");
        assert.equal(g.mgfSha, "SHA-256");
      }
    },
  });

  Deno.test({
    name:
      `decryptOaep() recovers every valid and refuses every invalid Wycheproof RSA-OAEP ${bits} ciphertext with a typed error`,
    ignore,
    async fn() {
      const acceptable: string[] = [];
      let valid = 0, invalid = 0;
      for (const g of data!.testGroups) {
        const identity = g.privateKeyPkcs8 !== undefined
          ? await privateIdentityFromDer(hex(g.privateKeyPkcs8), name)
          : await loadPrivateIdentity(g.privateKeyPem!, name);
        assert.equal(identity.bits, bits);
        // The bare import path must agree with the identity on the first case.
        if (g.privateKeyPkcs8 !== undefined) {
          const bare = await importOaepPrivateFromDer(
            hex(g.privateKeyPkcs8),
            name,
          );
          const first = g.tests.find((t) => t.result === "valid");
          if (first !== undefined) {
            const pt = await decryptOaep(bare, hex(first.ct), hex(first.label));
            assert.equal(pt.toHex(), first.msg);
          }
        }
        for (const t of g.tests) {
          const what = `tcId ${t.tcId} (${t.comment})`;
          let pt: Uint8Array | undefined;
          let err: unknown;
          try {
            pt = await decryptOaep(identity.decrypt, hex(t.ct), hex(t.label));
          } catch (e) {
            err = e;
          }
          if (err !== undefined) {
            assert.ok(
              err instanceof AuthError,
              `${what}: typed error, got ${err}`,
            );
            assert.equal(err.code, "bad-session-key");
          }
          if (t.result === "valid") {
            assert.ok(pt !== undefined, `${what} should decrypt`);
            assert.equal(pt.toHex(), t.msg, what);
            valid++;
          } else if (t.result === "invalid") {
            assert.equal(pt, undefined, `${what} must be refused`);
            invalid++;
          } else {
            acceptable.push(
              `${t.tcId}=${pt === undefined ? "refused" : "accepted"}`,
            );
          }
        }
      }
      assert.ok(valid > 0 && invalid > 0, `valid ${valid}, invalid ${invalid}`);
      report(name, acceptable);
    },
  });
}
