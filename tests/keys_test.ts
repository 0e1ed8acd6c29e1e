import assert from "node:assert/strict";
import { AuthError, KeyError, UsageError } from "../lib/util/mod.ts";
import {
  decryptOaep,
  encryptOaep,
  fingerprint,
  fingerprintBytes,
  formatFingerprint,
  generateRsaKeyPair,
  importOaepPrivateFromDer,
  importOaepPublicFromDer,
  importPssPrivateFromDer,
  importPssPublicFromDer,
  loadPrivateIdentity,
  loadPublicIdentity,
  MAX_PEM_CHARS,
  pemDecode,
  pemEncode,
  type PrivateIdentity,
  privateIdentityFromDer,
  publicIdentityFromDer,
  type RsaKeyPairPem,
  signPss,
  verifyPss,
} from "../lib/crypto/mod.ts";

const FP_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;
const enc = (s: string) => new TextEncoder().encode(s);

// A few 2048-bit keys, generated once for the whole file.
const pairs: RsaKeyPairPem[] = await Promise.all(
  [0, 1].map(() => generateRsaKeyPair(2048)),
);
const alice = await loadPrivateIdentity(pairs[0]!.privatePem);
const bob = await loadPrivateIdentity(pairs[1]!.privatePem);

const hasOpenssl = await new Deno.Command("openssl", {
  args: ["version"],
  stdout: "null",
  stderr: "null",
}).output().then((o) => o.success, () => false);

async function openssl(
  args: string[],
  stdin?: string,
): Promise<{ ok: boolean; out: Uint8Array }> {
  const child = new Deno.Command("openssl", {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(enc(stdin));
    await w.close();
  }
  const o = await child.output();
  return { ok: o.success, out: o.stdout };
}

async function rejects(
  p: Promise<unknown>,
  cls: typeof KeyError | typeof AuthError | typeof UsageError,
  code: string,
): Promise<Error> {
  const e = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(e instanceof cls, `expected ${cls.name} ${code}, got ${e}`);
  assert.equal((e as KeyError).code, code, (e as Error).message);
  assert.ok(!(e instanceof DOMException));
  return e as Error;
}

function throwsSync(
  f: () => unknown,
  code: string,
): KeyError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof KeyError, `expected KeyError, got ${caught}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

async function exportPkcs8(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
}
async function exportSpki(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", key));
}

// ---------------------------------------------------------------------------
// PEM

Deno.test("pemEncode() and pemDecode() round-trip DER of every length class", () => {
  for (const n of [0, 1, 2, 3, 47, 48, 49, 125, 126, 127, 128, 300, 70000]) {
    if (n + 6 > MAX_PEM_CHARS * 3 / 4) continue;
    const content = crypto.getRandomValues(new Uint8Array(Math.min(n, 65536)));
    const len = content.length;
    const header = len < 0x80
      ? [0x30, len]
      : len < 0x100
      ? [0x30, 0x81, len]
      : [0x30, 0x82, len >> 8, len & 0xff];
    const der = new Uint8Array([...header, ...content]);
    const pem = pemEncode("PUBLIC KEY", der);
    assert.deepEqual(pemDecode(pem, "PUBLIC KEY"), der);
  }
});

Deno.test("pemEncode() writes 64-character lines between BEGIN and END", () => {
  const pem = pairs[0]!.privatePem;
  const lines = pem.trimEnd().split("\n");
  assert.equal(lines[0], "-----BEGIN PRIVATE KEY-----");
  assert.equal(lines.at(-1), "-----END PRIVATE KEY-----");
  const body = lines.slice(1, -1);
  for (const l of body.slice(0, -1)) assert.equal(l.length, 64);
  assert.ok(body.at(-1)!.length <= 64 && body.at(-1)!.length > 0);
  assert.ok(pem.endsWith("-----\n"));
});

Deno.test("pemDecode() accepts CRLF line ends, 76-character lines and surrounding blank lines", () => {
  const der = pemDecode(pairs[0]!.publicPem, "PUBLIC KEY");
  const b64 = der.toBase64();
  const lines = b64.match(/.{1,76}/g)!;
  const pem = `\r\n\r\n-----BEGIN PUBLIC KEY-----\r\n${
    lines.join("\r\n")
  }\r\n-----END PUBLIC KEY-----\r\n\r\n`;
  assert.deepEqual(pemDecode(pem, "PUBLIC KEY"), der);
});

const goodPub = pairs[0]!.publicPem;
const goodBody = goodPub.split("\n").slice(1, -2).join("\n");
const wrap = (body: string, label = "PUBLIC KEY") =>
  `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
const derPem = (bytes: number[]) => wrap(new Uint8Array(bytes).toBase64());

const BAD_PEMS: [string, string, RegExp][] = [
  ["empty input", "", /no "-----BEGIN PUBLIC KEY-----" line/],
  ["only whitespace", " \n\t\n", /no "-----BEGIN PUBLIC KEY-----" line/],
  ["no header", goodBody + "\n-----END PUBLIC KEY-----\n", /no "-----BEGIN/],
  ["plain text", "hello world\n", /no "-----BEGIN PUBLIC KEY-----" line/],
  [
    "wrong label",
    wrap(goodBody, "PRIVATE KEY"),
    /expected "PUBLIC KEY" PEM, found "PRIVATE KEY"/,
  ],
  ["PKCS#1 label", wrap(goodBody, "RSA PUBLIC KEY"), /found "RSA PUBLIC KEY"/],
  ["certificate", wrap(goodBody, "CERTIFICATE"), /found "CERTIFICATE"/],
  [
    "OpenSSH key",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ user@host\n",
    /OpenSSH public key/,
  ],
  [
    "missing END",
    `-----BEGIN PUBLIC KEY-----\n${goodBody}\n`,
    /no "-----END PUBLIC KEY-----" line/,
  ],
  [
    "END with another label",
    `-----BEGIN PUBLIC KEY-----\n${goodBody}\n-----END PRIVATE KEY-----\n`,
    /no "-----END PUBLIC KEY-----" line/,
  ],
  ["text before BEGIN", "Subject: me\n" + goodPub, /unexpected text before/],
  ["trailing junk after END", goodPub + "junk\n", /unexpected text after/],
  ["two PEM blocks", goodPub + goodPub, /unexpected text after/],
  ["empty body", wrap("").replace("\n\n", "\n"), /empty PEM body/],
  [
    "invalid base64 character",
    wrap(goodBody.replace(/A/, "*")),
    /invalid base64 on line/,
  ],
  [
    "base64 with a space inside",
    wrap(goodBody.replace(/A/, "A A")),
    /invalid base64 on line/,
  ],
  ["padding in the middle", wrap("MAA=\nMAA="), /bad padding or length/],
  [
    "truncated base64",
    wrap(goodBody.slice(0, -1)),
    /invalid base64|bad padding/,
  ],
  ["non-zero padding bits", wrap("MAB="), /non-zero padding bits/],
  [
    "header line in body",
    wrap("Proc-Type: 4,ENCRYPTED\n" + goodBody),
    /invalid base64 on line 2/,
  ],
  [
    "DER that is not a SEQUENCE",
    derPem([0x02, 0x01, 0x05]),
    /not a DER SEQUENCE/,
  ],
  [
    "DER with trailing data",
    derPem([0x30, 0x00, 0xff, 0xff]),
    /2 bytes of trailing data/,
  ],
  [
    "DER length past the end",
    derPem([0x30, 0x05, 0x00]),
    /not valid DER: truncated/,
  ],
  [
    "DER indefinite length",
    derPem([0x30, 0x80, 0x00, 0x00]),
    /indefinite length/,
  ],
  [
    "DER non-minimal length",
    derPem([0x30, 0x81, 0x01, 0x00]),
    /non-minimal length/,
  ],
  [
    "oversized input",
    "-----BEGIN PUBLIC KEY-----\n" + "A".repeat(MAX_PEM_CHARS),
    /exceeds the limit/,
  ],
];

for (const [name, pem, why] of BAD_PEMS) {
  Deno.test(`pemDecode() rejects malformed PEM: ${name}`, () => {
    const e = throwsSync(
      () => pemDecode(pem, "PUBLIC KEY", `"x.pem"`),
      "bad-pem",
    );
    assert.match(e.message, /^Cannot read "x\.pem": /);
    assert.match(e.message, why);
    assert.ok(!e.message.endsWith("."));
  });
}

Deno.test("pemDecode() gives a conversion hint for a PKCS#1 private key", () => {
  const e = throwsSync(
    () => pemDecode(wrap(goodBody, "RSA PRIVATE KEY"), "PRIVATE KEY"),
    "bad-pem",
  );
  assert.match(e.hint ?? "", /openssl pkcs8 -topk8/);
});

// ---------------------------------------------------------------------------
// Fingerprints

Deno.test("fingerprint() is SHA256: plus unpadded base64 of SHA-256 over the SPKI DER", async () => {
  const der = pemDecode(pairs[0]!.publicPem, "PUBLIC KEY");
  const fp = await fingerprint(der);
  assert.match(fp, FP_PATTERN);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  assert.equal(
    fp,
    "SHA256:" + btoa(String.fromCharCode(...digest)).replace(/=+$/, ""),
  );
  assert.deepEqual(await fingerprintBytes(der), digest);
  assert.equal(formatFingerprint(digest), fp);
});

Deno.test("fingerprint() of empty input matches the known SHA-256 of nothing", async () => {
  assert.equal(
    await fingerprint(new Uint8Array()),
    "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
  );
});

Deno.test({
  name:
    "fingerprint() equals the SHA-256 that openssl computes over the public key",
  ignore: !hasOpenssl,
  async fn() {
    const der = await openssl(
      ["pkey", "-pubin", "-outform", "DER"],
      pairs[0]!.publicPem,
    );
    assert.ok(der.ok);
    assert.equal(await fingerprint(der.out), alice.fingerprint);
  },
});

Deno.test("identities carry the fingerprint of their canonical SPKI DER", async () => {
  assert.match(alice.fingerprint, FP_PATTERN);
  assert.equal(alice.fingerprint, await fingerprint(alice.publicDer));
  assert.deepEqual(
    alice.fingerprintBytes,
    await fingerprintBytes(alice.publicDer),
  );
  assert.notEqual(alice.fingerprint, bob.fingerprint);
});

// ---------------------------------------------------------------------------
// Generation

Deno.test("generateRsaKeyPair() makes a 2048-bit key with e = 65537 whose halves match", async () => {
  const spki = pemDecode(pairs[0]!.publicPem, "PUBLIC KEY");
  const k = await crypto.subtle.importKey(
    "spki",
    spki,
    { name: "RSA-PSS", hash: "SHA-256" },
    true,
    ["verify"],
  );
  const jwk = await crypto.subtle.exportKey("jwk", k);
  assert.equal(jwk.e, "AQAB");
  assert.equal((k.algorithm as RsaHashedKeyAlgorithm).modulusLength, 2048);
  assert.deepEqual(alice.publicDer, spki);
  assert.equal(alice.bits, 2048);
});

Deno.test("generateRsaKeyPair() never returns the same key twice", () => {
  assert.notEqual(pairs[0]!.privatePem, pairs[1]!.privatePem);
  assert.notEqual(pairs[0]!.publicPem, pairs[1]!.publicPem);
});

for (const bits of [1024, 2047, 4097, 8192, 2048.5, NaN, -2048, 0]) {
  Deno.test(`generateRsaKeyPair() refuses ${bits} bits with KeyError bad-bits, not a usage error`, async () => {
    const e = await rejects(generateRsaKeyPair(bits), KeyError, "bad-bits");
    assert.ok(!(e instanceof UsageError));
    assert.match(e.message, /expected an integer from 2048 to 4096/);
  });
}

Deno.test({
  name: "openssl pkey accepts the generated private and public PEM",
  ignore: !hasOpenssl,
  async fn() {
    const priv = await openssl(["pkey", "-noout"], pairs[0]!.privatePem);
    const pub = await openssl(
      ["pkey", "-pubin", "-noout"],
      pairs[0]!.publicPem,
    );
    assert.ok(priv.ok && pub.ok);
    const derived = await openssl(["pkey", "-pubout"], pairs[0]!.privatePem);
    assert.equal(new TextDecoder().decode(derived.out), pairs[0]!.publicPem);
  },
});

// ---------------------------------------------------------------------------
// Identities

Deno.test("loadPrivateIdentity() imports non-extractable PSS and OAEP keys", () => {
  assert.equal(alice.sign.algorithm.name, "RSA-PSS");
  assert.equal(alice.sign.type, "private");
  assert.deepEqual(alice.sign.usages, ["sign"]);
  assert.equal(alice.sign.extractable, false);
  assert.equal(alice.decrypt.algorithm.name, "RSA-OAEP");
  assert.deepEqual(alice.decrypt.usages, ["decrypt"]);
  assert.equal(alice.decrypt.extractable, false);
  const pub = alice.publicIdentity;
  assert.equal(pub.verify.extractable, false);
  assert.equal(pub.encrypt.extractable, false);
  assert.deepEqual(pub.verify.usages, ["verify"]);
  assert.deepEqual(pub.encrypt.usages, ["encrypt"]);
  assert.equal(
    ((alice.sign.algorithm as RsaHashedKeyAlgorithm).hash as Algorithm).name,
    "SHA-256",
  );
});

Deno.test("loadPublicIdentity() gives the same fingerprint as the private identity", async () => {
  const pub = await loadPublicIdentity(pairs[0]!.publicPem);
  assert.equal(pub.fingerprint, alice.fingerprint);
  assert.deepEqual(pub.publicDer, alice.publicDer);
  assert.equal(pub.bits, 2048);
});

Deno.test({
  name: "loadPrivateIdentity() reads a key made by openssl genpkey",
  ignore: !hasOpenssl,
  async fn() {
    const gen = await openssl([
      "genpkey",
      "-algorithm",
      "RSA",
      "-pkeyopt",
      "rsa_keygen_bits:2048",
    ]);
    assert.ok(gen.ok);
    const pem = new TextDecoder().decode(gen.out);
    const id = await loadPrivateIdentity(pem);
    const pubPem = await openssl(["pkey", "-pubout"], pem);
    assert.equal(
      id.fingerprint,
      (await loadPublicIdentity(new TextDecoder().decode(pubPem.out)))
        .fingerprint,
    );
  },
});

Deno.test("loadPrivateIdentity() rejects a public key PEM with a hint", async () => {
  const e = await rejects(
    loadPrivateIdentity(pairs[0]!.publicPem, `"k.pem"`),
    KeyError,
    "bad-pem",
  );
  assert.match((e as KeyError).hint ?? "", /private\.pem/);
});

Deno.test("loadPublicIdentity() rejects a private key PEM", async () => {
  await rejects(loadPublicIdentity(pairs[0]!.privatePem), KeyError, "bad-pem");
});

Deno.test("loadPrivateIdentity() rejects an EC key as not RSA", async () => {
  const ec = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  );
  const pem = pemEncode("PRIVATE KEY", await exportPkcs8(ec.privateKey));
  const e = await rejects(loadPrivateIdentity(pem), KeyError, "not-rsa");
  assert.match(
    e.message,
    /not an RSA key \(EC, algorithm 1\.2\.840\.10045\.2\.1\)/,
  );
});

Deno.test("loadPublicIdentity() rejects an Ed25519 key as not RSA", async () => {
  const ed = await crypto.subtle.generateKey("Ed25519", true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const pem = pemEncode("PUBLIC KEY", await exportSpki(ed.publicKey));
  const e = await rejects(loadPublicIdentity(pem), KeyError, "not-rsa");
  assert.match(e.message, /Ed25519/);
});

Deno.test("loading refuses a 1024-bit RSA key, private or public", async () => {
  const small = await crypto.subtle.generateKey(
    {
      name: "RSA-PSS",
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  const priv = pemEncode("PRIVATE KEY", await exportPkcs8(small.privateKey));
  const pub = pemEncode("PUBLIC KEY", await exportSpki(small.publicKey));
  const e = await rejects(loadPrivateIdentity(priv), KeyError, "bad-key-size");
  assert.match(e.message, /1024 bits, expected 2048 to 4096/);
  await rejects(loadPublicIdentity(pub), KeyError, "bad-key-size");
  await rejects(
    importPssPublicFromDer(await exportSpki(small.publicKey)),
    KeyError,
    "bad-key-size",
  );
});

Deno.test("loadPrivateIdentity() rejects a private key with a corrupted private exponent", async () => {
  const der = pemDecode(pairs[0]!.privatePem, "PRIVATE KEY");
  der[400]! ^= 0x10;
  const e = await rejects(
    loadPrivateIdentity(pemEncode("PRIVATE KEY", der)),
    KeyError,
    "bad-key",
  );
  assert.match(e.message, /corrupt|refused/);
});

const BAD_DERS: [string, number[]][] = [
  ["an empty SEQUENCE", [0x30, 0x00]],
  ["a SEQUENCE of one INTEGER", [0x30, 0x03, 0x02, 0x01, 0x00]],
  ["an OID-less algorithm", [
    0x30,
    0x07,
    0x02,
    0x01,
    0x00,
    0x30,
    0x02,
    0x05,
    0x00,
  ]],
];
for (const [name, bytes] of BAD_DERS) {
  Deno.test(`loading rejects a private and a public key that is ${name}`, async () => {
    const der = new Uint8Array(bytes);
    await rejects(
      loadPrivateIdentity(pemEncode("PRIVATE KEY", der)),
      KeyError,
      "bad-key",
    );
    await rejects(
      loadPublicIdentity(pemEncode("PUBLIC KEY", der)),
      KeyError,
      "bad-key",
    );
  });
}

Deno.test("loadPublicIdentity() rejects an RSA SPKI whose inner BIT STRING runs past its SEQUENCE", async () => {
  const der = pemDecode(pairs[0]!.publicPem, "PUBLIC KEY");
  assert.equal(der[1], 0x82);
  const bad = der.slice(0, der.length - 5);
  const inner = bad.length - 4;
  bad[2] = inner >> 8;
  bad[3] = inner & 0xff; // the outer SEQUENCE is consistent again
  assert.deepEqual(pemDecode(pemEncode("PUBLIC KEY", bad), "PUBLIC KEY"), bad);
  const e = await rejects(
    loadPublicIdentity(pemEncode("PUBLIC KEY", bad)),
    KeyError,
    "bad-key",
  );
  assert.match(e.message, /malformed SPKI public key \(truncated\)/);
});

Deno.test("privateIdentityFromDer() and publicIdentityFromDer() agree with the PEM loaders", async () => {
  const id = await privateIdentityFromDer(
    pemDecode(pairs[1]!.privatePem, "PRIVATE KEY"),
  );
  const pub = await publicIdentityFromDer(
    pemDecode(pairs[1]!.publicPem, "PUBLIC KEY"),
  );
  assert.equal(id.fingerprint, bob.fingerprint);
  assert.equal(pub.fingerprint, bob.fingerprint);
});

// ---------------------------------------------------------------------------
// RSA-PSS

const msg = enc("im v1 transcript");

Deno.test("signPss() and verifyPss() round-trip through the identity objects", async () => {
  const sig = await signPss(alice.sign, msg);
  assert.equal(sig.length, 256);
  assert.equal(await verifyPss(alice.publicIdentity.verify, sig, msg), true);
});

Deno.test("signPss() is randomised (salted): two signatures differ and both verify", async () => {
  const [a, b] = await Promise.all([
    signPss(alice.sign, msg),
    signPss(alice.sign, msg),
  ]);
  assert.notDeepEqual(a, b);
  assert.ok(await verifyPss(alice.publicIdentity.verify, a, msg));
  assert.ok(await verifyPss(alice.publicIdentity.verify, b, msg));
});

Deno.test("verifyPss() rejects a signature made by another key", async () => {
  const sig = await signPss(bob.sign, msg);
  assert.equal(await verifyPss(alice.publicIdentity.verify, sig, msg), false);
});

Deno.test("verifyPss() rejects a signature with one flipped bit", async () => {
  const sig = await signPss(alice.sign, msg);
  for (const i of [0, 100, 255]) {
    const bad = sig.slice();
    bad[i]! ^= 1;
    assert.equal(await verifyPss(alice.publicIdentity.verify, bad, msg), false);
  }
});

Deno.test("verifyPss() rejects a valid signature over different data", async () => {
  const sig = await signPss(alice.sign, msg);
  assert.equal(
    await verifyPss(alice.publicIdentity.verify, sig, enc("im v1 transcripT")),
    false,
  );
});

Deno.test("verifyPss() returns false, never throws, for signatures of the wrong length", async () => {
  const sig = await signPss(alice.sign, msg);
  for (
    const bad of [
      new Uint8Array(),
      sig.slice(1),
      new Uint8Array([...sig, 0]),
      new Uint8Array(512),
    ]
  ) {
    assert.equal(await verifyPss(alice.publicIdentity.verify, bad, msg), false);
  }
});

Deno.test("verifyPss() rejects a PSS signature with salt length 0 (salt 32 is required)", async () => {
  const k = await crypto.subtle.importKey(
    "pkcs8",
    pemDecode(pairs[0]!.privatePem, "PRIVATE KEY"),
    { name: "RSA-PSS", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const s0 = new Uint8Array(
    await crypto.subtle.sign({ name: "RSA-PSS", saltLength: 0 }, k, msg),
  );
  const s32 = new Uint8Array(
    await crypto.subtle.sign({ name: "RSA-PSS", saltLength: 32 }, k, msg),
  );
  assert.equal(await verifyPss(alice.publicIdentity.verify, s0, msg), false);
  assert.equal(await verifyPss(alice.publicIdentity.verify, s32, msg), true);
});

Deno.test("signPss() and verifyPss() refuse keys of the wrong kind", async () => {
  await rejects(signPss(alice.decrypt, msg), KeyError, "wrong-key");
  await rejects(
    signPss(alice.publicIdentity.verify, msg),
    KeyError,
    "wrong-key",
  );
  await rejects(
    verifyPss(alice.publicIdentity.encrypt, new Uint8Array(256), msg),
    KeyError,
    "wrong-key",
  );
});

Deno.test("the DER importers produce keys that work together (the path Wycheproof vectors use)", async () => {
  const pkcs8 = pemDecode(pairs[0]!.privatePem, "PRIVATE KEY");
  const spki = pemDecode(pairs[0]!.publicPem, "PUBLIC KEY");
  const [sk, vk, dk, ek] = await Promise.all([
    importPssPrivateFromDer(pkcs8),
    importPssPublicFromDer(spki),
    importOaepPrivateFromDer(pkcs8),
    importOaepPublicFromDer(spki),
  ]);
  assert.ok(await verifyPss(vk, await signPss(sk, msg), msg));
  const label = enc("l");
  assert.deepEqual(
    await decryptOaep(dk, await encryptOaep(ek, msg, label), label),
    msg,
  );
});

for (
  const [name, f] of [
    ["importPssPublicFromDer", importPssPublicFromDer],
    ["importOaepPublicFromDer", importOaepPublicFromDer],
    ["importPssPrivateFromDer", importPssPrivateFromDer],
    ["importOaepPrivateFromDer", importOaepPrivateFromDer],
  ] as const
) {
  Deno.test(`${name}() wraps garbage into KeyError, never a DOMException`, async () => {
    for (
      const bytes of [[], [1, 2, 3], [0x30, 0x00], [
        0x30,
        0x03,
        0x02,
        0x01,
        0x00,
      ]]
    ) {
      await rejects(f(new Uint8Array(bytes)), KeyError, "bad-key");
    }
  });
}

Deno.test("the private importers refuse an SPKI and the public importers a PKCS#8", async () => {
  const pkcs8 = pemDecode(pairs[0]!.privatePem, "PRIVATE KEY");
  const spki = pemDecode(pairs[0]!.publicPem, "PUBLIC KEY");
  await rejects(importPssPrivateFromDer(spki), KeyError, "bad-key");
  await rejects(importOaepPublicFromDer(pkcs8), KeyError, "bad-key");
});

// ---------------------------------------------------------------------------
// RSA-OAEP

const sessionKey = crypto.getRandomValues(new Uint8Array(32));
const label = enc("im v1 session key");

Deno.test("encryptOaep() and decryptOaep() round-trip a session key through the identity objects", async () => {
  const ct = await encryptOaep(alice.publicIdentity.encrypt, sessionKey, label);
  assert.equal(ct.length, 256);
  assert.deepEqual(await decryptOaep(alice.decrypt, ct, label), sessionKey);
});

Deno.test("encryptOaep() is randomised: the same key encrypts differently twice", async () => {
  const a = await encryptOaep(alice.publicIdentity.encrypt, sessionKey, label);
  const b = await encryptOaep(alice.publicIdentity.encrypt, sessionKey, label);
  assert.notDeepEqual(a, b);
});

Deno.test("decryptOaep() with the wrong label fails with AuthError bad-session-key", async () => {
  const ct = await encryptOaep(alice.publicIdentity.encrypt, sessionKey, label);
  for (const other of [enc("im v1 session keY"), new Uint8Array()]) {
    const e = await rejects(
      decryptOaep(alice.decrypt, ct, other),
      AuthError,
      "bad-session-key",
    );
    assert.equal(
      e.message,
      "Cannot decrypt the session key: RSA-OAEP decryption failed",
    );
  }
});

Deno.test("decryptOaep() with another identity's key fails with AuthError", async () => {
  const ct = await encryptOaep(alice.publicIdentity.encrypt, sessionKey, label);
  await rejects(
    decryptOaep(bob.decrypt, ct, label),
    AuthError,
    "bad-session-key",
  );
});

Deno.test("decryptOaep() rejects a ciphertext with one flipped bit, truncated or extended", async () => {
  const ct = await encryptOaep(alice.publicIdentity.encrypt, sessionKey, label);
  const flipped = ct.slice();
  flipped[128]! ^= 0x01;
  for (
    const bad of [
      flipped,
      ct.slice(1),
      new Uint8Array([...ct, 0]),
      new Uint8Array(),
      new Uint8Array(256),
    ]
  ) {
    await rejects(
      decryptOaep(alice.decrypt, bad, label),
      AuthError,
      "bad-session-key",
    );
  }
});

Deno.test("decryptOaep() rejects RSA-OAEP with SHA-1 (SHA-256 is required)", async () => {
  const k = await crypto.subtle.importKey(
    "spki",
    alice.publicDer,
    { name: "RSA-OAEP", hash: "SHA-1" },
    false,
    ["encrypt"],
  );
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: "RSA-OAEP", label }, k, sessionKey),
  );
  await rejects(
    decryptOaep(alice.decrypt, ct, label),
    AuthError,
    "bad-session-key",
  );
});

Deno.test("encryptOaep() takes 190 bytes under a 2048-bit key and refuses 191", async () => {
  const max = new Uint8Array(190).fill(7);
  const ct = await encryptOaep(alice.publicIdentity.encrypt, max, label);
  assert.deepEqual(await decryptOaep(alice.decrypt, ct, label), max);
  await rejects(
    encryptOaep(alice.publicIdentity.encrypt, new Uint8Array(191), label),
    KeyError,
    "oaep-too-long",
  );
});

Deno.test("encryptOaep() and decryptOaep() refuse keys of the wrong kind", async () => {
  await rejects(
    encryptOaep(alice.publicIdentity.verify, sessionKey, label),
    KeyError,
    "wrong-key",
  );
  await rejects(
    decryptOaep(alice.sign, new Uint8Array(256), label),
    KeyError,
    "wrong-key",
  );
});

Deno.test("a PrivateIdentity's public half is usable as a PublicIdentity", async () => {
  const id: PrivateIdentity = alice;
  const pub = await loadPublicIdentity(pemEncode("PUBLIC KEY", id.publicDer));
  const ct = await encryptOaep(pub.encrypt, sessionKey, label);
  assert.deepEqual(await decryptOaep(id.decrypt, ct, label), sessionKey);
});
