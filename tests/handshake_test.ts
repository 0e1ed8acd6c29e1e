/**
 * The login handshake, requirements section 2, driven in memory: fresh
 * nonces (2.1), pinned server key (2.2), what the client signs (2.3), one
 * error for every refusal (2.4), key transport and schedule (2.5, 2.6), key
 * confirmation (2.7) and usernames (2.9).
 */
import assert from "node:assert/strict";
import {
  AuthError,
  concat,
  ImError,
  ProtocolError,
  randomBytes,
  RecordError,
  utf8,
} from "../lib/util/mod.ts";
import { FrameKind } from "../lib/wire/mod.ts";
import {
  ClientHandshake,
  decodeClientAuth,
  decodeClientHello,
  decodeErrorFrame,
  decodeServerHello,
  decodeServerKey,
  encodeClientAuth,
  encodeClientHello,
  encodeErrorFrame,
  encodeServerHello,
  encodeServerKey,
  ErrorCode,
  errorFromFrame,
  NONCE_BYTES,
  PROTOCOL_VERSION,
  SESSION_KEY_BYTES,
} from "../lib/proto/mod.ts";
import {
  decryptOaep,
  deriveDirectionKeys,
  encryptOaep,
  fingerprintBytes,
  Label,
  signPss,
  transcriptHash,
  verifyPss,
} from "../lib/crypto/mod.ts";
import { RecordOpener, RecordSealer, RecordType } from "../lib/record/mod.ts";
import { serverKeyTag } from "../lib/proto/_login.ts";
import {
  assertRejectsIm,
  assertThrowsIm,
  captureEphemerals,
  flipBit,
  handshakePair,
  identities,
  loginInMemory,
  seededRandom,
  x25519,
} from "./_helpers.ts";

// ---------------------------------------------------------------------------
// Spies on WebCrypto, restored in `finally`.

/** Record every key `crypto.subtle.sign` is called with. */
function spySign(): { signedWith(key: CryptoKey): number; restore(): void } {
  const subtle = crypto.subtle as { sign: SubtleCrypto["sign"] };
  const original = subtle.sign;
  const keys: CryptoKey[] = [];
  subtle.sign = function (this: SubtleCrypto, alg, key, data) {
    keys.push(key);
    return original.call(this, alg, key, data);
  } as SubtleCrypto["sign"];
  return {
    signedWith: (key) => keys.filter((k) => k === key).length,
    restore: () => {
      subtle.sign = original;
    },
  };
}

// ---------------------------------------------------------------------------
// The transcript, recomputed from PROTOCOL.md and the public messages.

async function loginTranscript(
  helloBytes: Uint8Array,
  serverHelloBytes: Uint8Array,
  change: Partial<
    Record<
      "version" | "serverVersion" | "user" | "nc" | "ns" | "fp" | "ec" | "es",
      Uint8Array
    >
  > = {},
): Promise<Uint8Array> {
  const h = decodeClientHello(helloBytes);
  const s = decodeServerHello(serverHelloBytes);
  const fp = await fingerprintBytes(s.serverPublicKey);
  return await transcriptHash(Label.TRANSCRIPT, [
    change.version ?? new Uint8Array([h.version]),
    change.serverVersion ?? new Uint8Array([s.version]),
    change.user ?? utf8(h.user),
    change.nc ?? h.nonce,
    change.ns ?? s.nonce,
    change.fp ?? fp,
    change.ec ?? h.ephemeral,
    change.es ?? s.ephemeral,
  ]);
}

function signedContent(label: string, th: Uint8Array): Uint8Array {
  return concat(utf8(label), new Uint8Array([0]), th);
}

/** Run a login up to the client's CLIENT_AUTH; return everything said so far. */
async function upToClientAuth(
  user = "A",
  opts: Parameters<typeof handshakePair>[1] = {},
) {
  const p = await handshakePair(user, opts);
  const hello = await p.client.start();
  // The server's X25519 pair, so a test can tag a SERVER_KEY as it would.
  const { value: serverHello, pairs } = await captureEphemerals(() =>
    p.server.onClientHello(hello)
  );
  const auth = await p.client.onServerHello(serverHello);
  /**
   * A SERVER_KEY carrying `sealed` with the tag this login's server makes
   * (PROTOCOL.md section 3): only the holder of eph_s can.
   */
  const serverKeyAsServer = async (sealed: Uint8Array) => {
    const clientPub = await crypto.subtle.importKey(
      "raw",
      decodeClientHello(hello).ephemeral as Uint8Array<ArrayBuffer>,
      { name: "X25519" },
      false,
      [],
    );
    const dh = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "X25519", public: clientPub },
        pairs[0]!.privateKey,
        256,
      ),
    );
    const th = await loginTranscript(hello, serverHello);
    return encodeServerKey({
      sealedSessionKey: sealed,
      tag: await serverKeyTag(dh, th, sealed),
    });
  };
  return { ...p, hello, serverHello, auth, serverKeyAsServer };
}

// ---------------------------------------------------------------------------
// Success

Deno.test("a full login succeeds and records flow both ways", async () => {
  const { client, server } = await loginInMemory("A");
  assert.equal(client.user, "A");
  assert.equal(server.user, "A");
  assert.deepEqual(client.transcript, server.transcript);
  assert.deepEqual(
    client.ticketKeys,
    server.ticketKeys,
    "both sides derive the same ticket keys",
  );
  for (let i = 0; i < 3; i++) {
    const up = client.sealer.seal(RecordType.DATA, utf8(`up ${i}`));
    assert.deepEqual(server.opener.open(up).plaintext, utf8(`up ${i}`));
    const down = server.sealer.seal(RecordType.DATA, utf8(`down ${i}`));
    assert.deepEqual(client.opener.open(down).plaintext, utf8(`down ${i}`));
  }
  // FINISHED used seq 0 in each direction; application data follows at 1.
  assert.equal(server.opener.nextSeq, 4n);
  assert.equal(client.opener.nextSeq, 4n);
});

Deno.test("two logins of the same user get different transcripts and keys", async () => {
  const a = await loginInMemory("A");
  const b = await loginInMemory("A");
  assert.notDeepEqual(a.client.transcript, b.client.transcript);
  assert.notDeepEqual(a.client.ticketKeys, b.client.ticketKeys);
  const rec = a.client.sealer.seal(RecordType.DATA, utf8("x"));
  assertThrowsIm(() => b.server.opener.open(rec), RecordError, "tampered");
});

Deno.test("the client signs only once, and only after the server proved its key (rule 2.2)", async () => {
  const ids = await identities();
  const spy = spySign();
  try {
    await loginInMemory("A");
    assert.equal(
      spy.signedWith(ids.A.sign),
      1,
      "one client signature per login",
    );
    assert.equal(
      spy.signedWith(ids.server.sign),
      1,
      "one server signature per login",
    );
  } finally {
    spy.restore();
  }
});

// ---------------------------------------------------------------------------
// Rule 2.1: fresh nonces

Deno.test("CLIENT_HELLO nonces and ephemeral keys are fresh 32-byte values on every attempt (rule 2.1)", async () => {
  const seen = new Set<string>();
  const ephs = new Set<string>();
  for (let i = 0; i < 5; i++) {
    const { client } = await handshakePair("A");
    const h = decodeClientHello(await client.start());
    assert.equal(h.nonce.length, NONCE_BYTES);
    assert.equal(NONCE_BYTES, 32);
    assert.equal(h.ephemeral.length, 32);
    seen.add(h.nonce.toHex());
    ephs.add(h.ephemeral.toHex());
  }
  assert.equal(seen.size, 5);
  assert.equal(ephs.size, 5);
});

Deno.test("the server answers the same CLIENT_HELLO with a fresh nonce, ephemeral key and signature each time (rule 2.1)", async () => {
  const { client } = await handshakePair("A");
  const hello = await client.start();
  const answers = [];
  for (let i = 0; i < 3; i++) {
    const { server } = await handshakePair("A");
    answers.push(decodeServerHello(await server.onClientHello(hello)));
  }
  const nonces = new Set(answers.map((a) => a.nonce.toHex()));
  const ephs = new Set(answers.map((a) => a.ephemeral.toHex()));
  const sigs = new Set(answers.map((a) => a.signature.toHex()));
  assert.equal(nonces.size, 3);
  assert.equal(ephs.size, 3);
  assert.equal(sigs.size, 3);
  for (const a of answers) assert.equal(a.nonce.length, 32);
});

// ---------------------------------------------------------------------------
// Rule 2.2: the server proves its identity against the pinned key

Deno.test("a client pinned to another server key refuses with server-key-mismatch before signing, naming both fingerprints", async () => {
  const ids = await identities();
  const { client, server } = await handshakePair("A", {
    pinned: ids.otherServer.publicIdentity,
  });
  const serverHello = await server.onClientHello(await client.start());
  const spy = spySign();
  let e: AuthError;
  try {
    e = await assertRejectsIm(
      () => client.onServerHello(serverHello),
      AuthError,
      "server-key-mismatch",
    );
    assert.equal(spy.signedWith(ids.A.sign), 0, "no client signature was made");
  } finally {
    spy.restore();
  }
  assert.equal(client.state, "failed");
  assert.ok(
    e.message.includes(ids.server.fingerprint),
    `presented key named: ${e.message}`,
  );
  assert.ok(
    e.message.includes(ids.otherServer.fingerprint),
    `pinned key named: ${e.message}`,
  );
  assert.match(e.message, /mismatch/i);
  assert.ok(
    e.hint !== undefined && e.hint.length > 0,
    "tells the user what to do",
  );
  // The failure is permanent: nothing is produced afterwards.
  const again = await assertRejectsIm(
    () => client.onServerHello(serverHello),
    AuthError,
  );
  assert.equal(again, e);
  await assertRejectsIm(
    () => client.onServerKey(new Uint8Array([FrameKind.SERVER_KEY])),
    AuthError,
  );
  assertThrowsIm(() => client.result, ProtocolError, "not-logged-in");
});

Deno.test("a SERVER_HELLO whose signature was tampered with is refused with bad-server-signature, before the client signs", async () => {
  const ids = await identities();
  for (const bit of [0, 8 * 100 + 3, 8 * 255 + 7]) {
    const { client, server } = await handshakePair("A");
    const m = decodeServerHello(
      await server.onClientHello(await client.start()),
    );
    const bad = encodeServerHello({
      ...m,
      signature: flipBit(m.signature, bit),
    });
    const spy = spySign();
    try {
      await assertRejectsIm(
        () => client.onServerHello(bad),
        AuthError,
        "bad-server-signature",
        `bit ${bit}`,
      );
      assert.equal(spy.signedWith(ids.A.sign), 0);
    } finally {
      spy.restore();
    }
    assert.equal(client.state, "failed");
  }
});

Deno.test("a SERVER_HELLO with an altered nonce or ephemeral key fails the server signature check", async () => {
  for (const field of ["nonce", "ephemeral"] as const) {
    const { client, server } = await handshakePair("A");
    const m = decodeServerHello(
      await server.onClientHello(await client.start()),
    );
    const bad = encodeServerHello({ ...m, [field]: flipBit(m[field], 5) });
    await assertRejectsIm(
      () => client.onServerHello(bad),
      AuthError,
      "bad-server-signature",
      field,
    );
  }
});

Deno.test("a SERVER_HELLO replayed from an earlier login is refused: the client's fresh nonce is in the signed transcript", async () => {
  const old = await upToClientAuth("A");
  const { client } = await handshakePair("A");
  await client.start();
  await assertRejectsIm(
    () => client.onServerHello(old.serverHello),
    AuthError,
    "bad-server-signature",
  );
});

Deno.test("a SERVER_HELLO carrying the pinned key but signed by another key is refused", async () => {
  const ids = await identities();
  const { client, server } = await handshakePair("A");
  const hello = await client.start();
  const serverHello = await server.onClientHello(hello);
  const m = decodeServerHello(serverHello);
  // An impostor copies the real public key and signs the right content, but
  // can only sign with its own key.
  const th = await loginTranscript(hello, serverHello);
  const forged = await signPss(
    ids.otherServer.sign,
    signedContent(Label.SERVER_SIGNATURE, th),
  );
  await assertRejectsIm(
    () => client.onServerHello(encodeServerHello({ ...m, signature: forged })),
    AuthError,
    "bad-server-signature",
  );
});

// ---------------------------------------------------------------------------
// Rule 2.3: what each side signs

Deno.test("the server signs `im v1 server signature` || 0 || th with th over version, user, both nonces, its fingerprint, both ephemerals", async () => {
  const ids = await identities();
  const { client, server } = await handshakePair("A");
  const hello = await client.start();
  const serverHello = await server.onClientHello(hello);
  const sig = decodeServerHello(serverHello).signature;
  const th = await loginTranscript(hello, serverHello);
  assert.ok(
    await verifyPss(
      ids.server.publicIdentity.verify,
      sig,
      signedContent(Label.SERVER_SIGNATURE, th),
    ),
  );
  assert.ok(
    !(await verifyPss(
      ids.server.publicIdentity.verify,
      sig,
      signedContent(Label.CLIENT_SIGNATURE, th),
    )),
  );
});

Deno.test("the client signs `im v1 client signature` || 0 || th, and th binds both versions, user, both nonces, the server fingerprint and both ephemerals (rule 2.3)", async () => {
  const ids = await identities();
  const { hello, serverHello, auth } = await upToClientAuth("A");
  const sig = decodeClientAuth(auth).signature;
  const verify = (th: Uint8Array, label: string = Label.CLIENT_SIGNATURE) =>
    verifyPss(ids.A.publicIdentity.verify, sig, signedContent(label, th));
  assert.ok(
    await verify(await loginTranscript(hello, serverHello)),
    "signature over the recomputed transcript",
  );
  assert.ok(
    !(await verify(
      await loginTranscript(hello, serverHello),
      Label.SERVER_SIGNATURE,
    )),
    "domain-separated from the server's signature",
  );
  const other = randomBytes(32);
  for (
    const change of [
      { version: new Uint8Array([2]) },
      { serverVersion: new Uint8Array([2]) },
      { user: utf8("B") },
      { nc: other },
      { ns: other },
      { fp: ids.otherServer.fingerprintBytes },
      { ec: other },
      { es: other },
    ]
  ) {
    assert.ok(
      !(await verify(await loginTranscript(hello, serverHello, change))),
      `the signature covers ${Object.keys(change)[0]}`,
    );
  }
});

// ---------------------------------------------------------------------------
// Rule 2.4: one error for every refusal

Deno.test("a wrong client key, an unknown user and a replayed CLIENT_AUTH all fail with the same login-failed error", async () => {
  const ids = await identities();
  const errors: AuthError[] = [];

  // 1. A's name, B's key.
  const wrongKey = await upToClientAuth("A", { identity: ids.B });
  errors.push(
    await assertRejectsIm(
      () => wrongKey.server.onClientAuth(wrongKey.auth),
      AuthError,
      "login-failed",
    ),
  );
  assert.equal(wrongKey.server.state, "failed");

  // 2. A user the server does not know, signing correctly with its own key.
  const unknown = await upToClientAuth("Zed", { identity: ids.stranger });
  errors.push(
    await assertRejectsIm(
      () => unknown.server.onClientAuth(unknown.auth),
      AuthError,
      "login-failed",
    ),
  );

  // 3. A's CLIENT_HELLO and CLIENT_AUTH recorded from an earlier login, replayed.
  const earlier = await upToClientAuth("A");
  const { server } = await handshakePair("A");
  await server.onClientHello(earlier.hello);
  errors.push(
    await assertRejectsIm(
      () => server.onClientAuth(earlier.auth),
      AuthError,
      "login-failed",
    ),
  );

  // 4. A CLIENT_AUTH with an empty or garbage signature.
  const garbage = await upToClientAuth("A");
  errors.push(
    await assertRejectsIm(
      () =>
        garbage.server.onClientAuth(
          encodeClientAuth({ signature: randomBytes(256) }),
        ),
      AuthError,
      "login-failed",
    ),
  );

  for (const e of errors) {
    assert.equal(e.message, errors[0]!.message, "same message");
    assert.equal(e.hint, errors[0]!.hint, "same hint");
    assert.equal(e.name, "AuthError");
  }
  // The earlier login itself was still fine.
  const [key] = await earlier.server.onClientAuth(earlier.auth);
  assert.equal(key![0], FrameKind.SERVER_KEY);
});

Deno.test("the server consults the decoy key for an unknown user, so both refusals do the same work (rule 2.4)", async () => {
  const ids = await identities();
  // Count RSA-PSS verifications through WebCrypto.
  const subtle = crypto.subtle as { verify: SubtleCrypto["verify"] };
  const original = subtle.verify;
  const used: CryptoKey[] = [];
  subtle.verify = function (this: SubtleCrypto, alg, key, sig, data) {
    used.push(key);
    return original.call(this, alg, key, sig, data);
  } as SubtleCrypto["verify"];
  try {
    const unknown = await upToClientAuth("Zed", { identity: ids.stranger });
    used.length = 0;
    await assertRejectsIm(
      () => unknown.server.onClientAuth(unknown.auth),
      AuthError,
      "login-failed",
    );
    assert.equal(
      used.length,
      1,
      "one signature verification for an unknown user",
    );
    const wrong = await upToClientAuth("A", { identity: ids.B });
    used.length = 0;
    await assertRejectsIm(
      () => wrong.server.onClientAuth(wrong.auth),
      AuthError,
      "login-failed",
    );
    assert.equal(
      used.length,
      1,
      "one signature verification for a bad signature",
    );
  } finally {
    subtle.verify = original;
  }
});

// ---------------------------------------------------------------------------
// Rule 2.5 and 2.6: key transport and schedule

Deno.test("the working keys are HKDF(session key || X25519 secret, th2) as PROTOCOL.md says, and FINISHED carries th2 (rules 2.5, 2.7)", async () => {
  const ids = await identities();
  const { client, server } = await handshakePair("A");
  const { value: hello, pairs } = await captureEphemerals(() => client.start());
  assert.equal(pairs.length, 1);
  const serverHello = await server.onClientHello(hello);
  const auth = await client.onServerHello(serverHello);
  const [serverKey, serverFin] = await server.onClientAuth(auth);
  const sealed = decodeServerKey(serverKey!).sealedSessionKey;
  assert.equal(sealed.length, 256, "RSA-OAEP under the client's 2048-bit key");

  const sessionKey = await decryptOaep(
    ids.A.decrypt,
    sealed,
    utf8(Label.SESSION_KEY),
  );
  assert.equal(sessionKey.length, SESSION_KEY_BYTES);
  const dh = await x25519(
    pairs[0]!.privateKey,
    decodeServerHello(serverHello).ephemeral,
  );
  const th = await loginTranscript(hello, serverHello);
  const th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [
    th,
    decodeClientAuth(auth).signature,
    sealed,
  ]);
  const s2c = await deriveDirectionKeys(concat(sessionKey, dh), th2, "s2c");
  const c2s = await deriveDirectionKeys(concat(sessionKey, dh), th2, "c2s");

  const fin = new RecordOpener(s2c).open(serverFin!);
  assert.equal(fin.type, RecordType.FINISHED);
  assert.deepEqual(fin.plaintext, th2);

  await client.onServerKey(serverKey!);
  const clientFin = await client.onServerFinished(serverFin!);
  const cfin = new RecordOpener(c2s).open(clientFin);
  assert.equal(cfin.type, RecordType.FINISHED);
  assert.deepEqual(cfin.plaintext, th2);
  await server.onClientFinished(clientFin);
  assert.deepEqual(client.result.transcript, th2);

  // Without the X25519 secret, the session key alone opens nothing (rule 2.5).
  const rsaOnly = await deriveDirectionKeys(sessionKey, th2, "s2c");
  const later = server.result.sealer.seal(RecordType.DATA, utf8("secret"));
  assertThrowsIm(
    () => new RecordOpener(rsaOnly).open(later),
    RecordError,
    "tampered",
  );
});

Deno.test("a SERVER_KEY with a flipped OAEP ciphertext bit fails with bad-session-key", async () => {
  for (const bit of [0, 1000, 2047]) {
    const p = await upToClientAuth("A");
    const [key] = await p.server.onClientAuth(p.auth);
    const m = decodeServerKey(key!);
    const bad = encodeServerKey({
      sealedSessionKey: flipBit(m.sealedSessionKey, bit),
      tag: m.tag,
    });
    await assertRejectsIm(
      () => p.client.onServerKey(bad),
      AuthError,
      "bad-session-key",
      `bit ${bit}`,
    );
    assert.equal(p.client.state, "failed");
  }
});

Deno.test("a SERVER_KEY sealed for another user, under another OAEP label, or of the wrong length is refused", async () => {
  const ids = await identities();
  const cases: [string, Uint8Array][] = [
    [
      "another user",
      await encryptOaep(
        ids.B.publicIdentity.encrypt,
        randomBytes(32),
        utf8(Label.SESSION_KEY),
      ),
    ],
    [
      "another label",
      await encryptOaep(
        ids.A.publicIdentity.encrypt,
        randomBytes(32),
        utf8("im v1 other"),
      ),
    ],
    [
      "no label",
      await encryptOaep(
        ids.A.publicIdentity.encrypt,
        randomBytes(32),
        new Uint8Array(0),
      ),
    ],
    [
      "16-byte key",
      await encryptOaep(
        ids.A.publicIdentity.encrypt,
        randomBytes(16),
        utf8(Label.SESSION_KEY),
      ),
    ],
    [
      "33-byte key",
      await encryptOaep(
        ids.A.publicIdentity.encrypt,
        randomBytes(33),
        utf8(Label.SESSION_KEY),
      ),
    ],
  ];
  for (const [what, sealed] of cases) {
    // Tagged as the server would: the checks behind the tag still hold.
    const p = await upToClientAuth("A");
    await assertRejectsIm(
      async () => p.client.onServerKey(await p.serverKeyAsServer(sealed)),
      AuthError,
      "bad-session-key",
      what,
    );
  }
});

Deno.test("a man in the middle who substitutes its own session key under the client's public key is refused before the client decrypts it (no valid tag)", async () => {
  const ids = await identities();
  const p = await upToClientAuth("A");
  const [real] = await p.server.onClientAuth(p.auth);
  // Anyone can encrypt to A's public key; nobody but the server can tag it.
  const mine = await encryptOaep(
    ids.A.publicIdentity.encrypt,
    randomBytes(32),
    utf8(Label.SESSION_KEY),
  );
  const decrypts = await countingDecrypts(() =>
    assertRejectsIm(
      () =>
        p.client.onServerKey(
          encodeServerKey({
            sealedSessionKey: mine,
            tag: decodeServerKey(real!).tag,
          }),
        ),
      AuthError,
      "bad-session-key",
    )
  );
  assert.equal(decrypts, 0, "the RSA key decrypted nothing");
  assertThrowsIm(() => p.client.result, ProtocolError, "not-logged-in");
});

// PROTOCOL.md section 3: the tag is checked before the RSA decryption, so
// the client's key (which also signs) never decrypts a chosen ciphertext.
Deno.test("SERVER_KEY: a wrong tag is refused with bad-session-key before any RSA decryption; the real one is decrypted once", async () => {
  for (const change of ["tag", "ciphertext"] as const) {
    const p = await upToClientAuth("A");
    const [key] = await p.server.onClientAuth(p.auth);
    const m = decodeServerKey(key!);
    const bad = encodeServerKey(
      change === "tag"
        ? { sealedSessionKey: m.sealedSessionKey, tag: flipBit(m.tag, 5) }
        : { sealedSessionKey: flipBit(m.sealedSessionKey, 9), tag: m.tag },
    );
    const decrypts = await countingDecrypts(() =>
      assertRejectsIm(
        () => p.client.onServerKey(bad),
        AuthError,
        "bad-session-key",
        change,
      )
    );
    assert.equal(decrypts, 0, `${change}: no decryption`);
  }
  const p = await upToClientAuth("A");
  const [key] = await p.server.onClientAuth(p.auth);
  assert.equal(await countingDecrypts(() => p.client.onServerKey(key!)), 1);
});

/** How many WebCrypto decryptions `fn` made. */
async function countingDecrypts(fn: () => Promise<unknown>): Promise<number> {
  const subtle = crypto.subtle as { decrypt: SubtleCrypto["decrypt"] };
  const original = subtle.decrypt;
  let n = 0;
  subtle.decrypt = function (this: SubtleCrypto, ...args: unknown[]) {
    n++;
    // deno-lint-ignore no-explicit-any
    return (original as any).apply(this, args);
  } as SubtleCrypto["decrypt"];
  try {
    await fn();
  } finally {
    subtle.decrypt = original;
  }
  return n;
}

Deno.test("the c2s and s2c directions have different keys: the client cannot open its own records (rule 2.6)", async () => {
  const { client, server } = await loginInMemory("B");
  const mine = client.sealer.seal(RecordType.DATA, utf8("mine"));
  assertThrowsIm(() => client.opener.open(mine), RecordError, "tampered");
  const theirs = server.sealer.seal(RecordType.DATA, utf8("theirs"));
  assertThrowsIm(() => server.opener.open(theirs), RecordError, "tampered");
});

// ---------------------------------------------------------------------------
// Rule 2.7: key confirmation

Deno.test("the server refuses a client FINISHED with the wrong transcript, or of the wrong type (rule 2.7)", async () => {
  for (
    const variant of [
      "wrong transcript",
      "DATA type",
      "random bytes",
      "another login",
    ] as const
  ) {
    const p = await upToClientAuth("A");
    const [key, fin] = await p.server.onClientAuth(p.auth);
    await p.client.onServerKey(key!);
    await p.client.onServerFinished(fin!);
    const r = p.client.result;
    let bad: Uint8Array;
    if (variant === "wrong transcript") {
      bad = r.sealer.seal(RecordType.FINISHED, flipBit(r.transcript, 0));
    } else if (variant === "DATA type") {
      bad = r.sealer.seal(RecordType.DATA, r.transcript);
    } else if (variant === "random bytes") {
      bad = concat(new Uint8Array([FrameKind.RECORD]), randomBytes(81));
    } else {bad = (await loginInMemory("A")).client.sealer.seal(
        RecordType.FINISHED,
        r.transcript,
      );}
    await assertRejectsIm(
      () => p.server.onClientFinished(bad),
      AuthError,
      "key-confirmation-failed",
      variant,
    );
    assert.equal(p.server.state, "failed");
    assertThrowsIm(() => p.server.result, ProtocolError, "not-logged-in");
  }
});

Deno.test("the client refuses a server FINISHED with the wrong transcript, and accepts the right one under the same keys (rule 2.7)", async () => {
  const ids = await identities();
  for (const good of [false, true]) {
    const { client, server } = await handshakePair("A");
    const { value: hello, pairs } = await captureEphemerals(() =>
      client.start()
    );
    const serverHello = await server.onClientHello(hello);
    const auth = await client.onServerHello(serverHello);
    const [serverKey] = await server.onClientAuth(auth);
    const sealed = decodeServerKey(serverKey!).sealedSessionKey;
    const sessionKey = await decryptOaep(
      ids.A.decrypt,
      sealed,
      utf8(Label.SESSION_KEY),
    );
    const dh = await x25519(
      pairs[0]!.privateKey,
      decodeServerHello(serverHello).ephemeral,
    );
    const th = await loginTranscript(hello, serverHello);
    const th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [
      th,
      decodeClientAuth(auth).signature,
      sealed,
    ]);
    const s2c = await deriveDirectionKeys(concat(sessionKey, dh), th2, "s2c");
    const forged = new RecordSealer(s2c).seal(
      RecordType.FINISHED,
      good ? th2 : flipBit(th2, 255),
    );
    await client.onServerKey(serverKey!);
    if (good) {
      const mine = await client.onServerFinished(forged);
      assert.equal(mine[0], FrameKind.RECORD);
      assert.equal(client.state, "done");
    } else {
      await assertRejectsIm(
        () => client.onServerFinished(forged),
        AuthError,
        "key-confirmation-failed",
      );
      assert.equal(client.state, "failed");
    }
  }
});

Deno.test("the client refuses a server FINISHED from an earlier login", async () => {
  const earlier = await upToClientAuth("A");
  const [, oldFin] = await earlier.server.onClientAuth(earlier.auth);
  const p = await upToClientAuth("A");
  const [key] = await p.server.onClientAuth(p.auth);
  await p.client.onServerKey(key!);
  await assertRejectsIm(
    () => p.client.onServerFinished(oldFin!),
    AuthError,
    "key-confirmation-failed",
  );
});

Deno.test("neither side hands out keys before key confirmation", async () => {
  const p = await upToClientAuth("A");
  const [key, fin] = await p.server.onClientAuth(p.auth);
  assertThrowsIm(() => p.server.result, ProtocolError, "not-logged-in");
  await p.client.onServerKey(key!);
  assertThrowsIm(() => p.client.result, ProtocolError, "not-logged-in");
  const clientFin = await p.client.onServerFinished(fin!);
  assertThrowsIm(() => p.server.result, ProtocolError, "not-logged-in");
  await p.server.onClientFinished(clientFin);
  assert.equal(p.server.result.user, "A");
});

// ---------------------------------------------------------------------------
// Order, malformed input, versions

Deno.test("handshake steps out of order throw ProtocolError", async () => {
  {
    const { client } = await handshakePair("A");
    await assertRejectsIm(
      () => client.onServerHello(new Uint8Array([2])),
      ProtocolError,
      "unexpected-frame",
    );
    await assertRejectsIm(
      () => client.onServerKey(new Uint8Array([4])),
      ProtocolError,
      "unexpected-frame",
    );
    await assertRejectsIm(
      () => client.onServerFinished(new Uint8Array([0x10])),
      ProtocolError,
      "unexpected-frame",
    );
    await client.start();
    await assertRejectsIm(
      () => client.start(),
      ProtocolError,
      "unexpected-frame",
    );
    await assertRejectsIm(
      () => client.onServerKey(new Uint8Array([4])),
      ProtocolError,
      "unexpected-frame",
    );
  }
  {
    const { server } = await handshakePair("A");
    await assertRejectsIm(
      () => server.onClientAuth(new Uint8Array([3])),
      ProtocolError,
      "unexpected-frame",
    );
    await assertRejectsIm(
      () => server.onClientFinished(new Uint8Array([0x10])),
      ProtocolError,
      "unexpected-frame",
    );
  }
  {
    const p = await upToClientAuth("A");
    await assertRejectsIm(
      () => p.server.onClientHello(p.hello),
      ProtocolError,
      "unexpected-frame",
    );
    await assertRejectsIm(
      () => p.server.onClientFinished(new Uint8Array([0x10])),
      ProtocolError,
      "unexpected-frame",
    );
    await assertRejectsIm(
      () => p.client.onServerHello(p.serverHello),
      ProtocolError,
      "unexpected-frame",
    );
  }
});

Deno.test("a frame of the wrong kind at a handshake step is a ProtocolError", async () => {
  const p = await upToClientAuth("A");
  // SERVER_HELLO where SERVER_KEY is expected.
  await assertRejectsIm(
    () => p.client.onServerKey(p.serverHello),
    ProtocolError,
    "unexpected-frame",
  );
  const q = await handshakePair("A");
  const hello = await q.client.start();
  // CLIENT_HELLO where SERVER_HELLO is expected, CLIENT_AUTH where CLIENT_HELLO is.
  await assertRejectsIm(
    () => q.client.onServerHello(hello),
    ProtocolError,
    "unexpected-frame",
  );
  await assertRejectsIm(
    () => q.server.onClientHello(p.auth),
    ProtocolError,
    "unexpected-frame",
  );
});

Deno.test("an ERROR frame from the server at any client step becomes a typed error", async () => {
  const err = encodeErrorFrame({
    code: ErrorCode.AUTH_FAILED,
    message: "unknown user or wrong key",
  });
  const { client } = await handshakePair("A");
  await client.start();
  const e = await assertRejectsIm(
    () => client.onServerHello(err),
    AuthError,
    "login-failed",
  );
  assert.match(e.message, /unknown user or wrong key/);
  const p = await upToClientAuth("A");
  await assertRejectsIm(
    () => p.client.onServerKey(err),
    AuthError,
    "login-failed",
  );
});

Deno.test("errorFromFrame() maps every ERROR code to a typed error with a stable code", () => {
  const expected: [number, typeof AuthError | typeof ProtocolError, string][] =
    [
      [ErrorCode.AUTH_FAILED, AuthError, "login-failed"],
      [ErrorCode.RATE_LIMITED, AuthError, "rate-limited"],
      [ErrorCode.BAD_USERNAME, AuthError, "bad-username"],
      [ErrorCode.TOO_MANY, ProtocolError, "server-busy"],
      [ErrorCode.SHUTDOWN, ProtocolError, "server-shutdown"],
      [ErrorCode.TIMEOUT, ProtocolError, "login-timeout"],
      [ErrorCode.VERSION, ProtocolError, "version"],
      [ErrorCode.PROTOCOL, ProtocolError, "server-error"],
      [200, ProtocolError, "server-error"],
    ];
  for (const [code, cls, name] of expected) {
    const e = errorFromFrame(encodeErrorFrame({ code, message: "why" }));
    assert.ok(e instanceof cls, `code ${code}`);
    assert.equal(e.code, name);
    assert.match(e.message, /why/);
  }
  for (
    const bad of [
      new Uint8Array([0x0e]),
      new Uint8Array([0x0e, 2, 0, 5, 0x61]),
      new Uint8Array([0x0e, 2, 0, 1, 0xff]),
    ]
  ) {
    assert.ok(errorFromFrame(bad) instanceof ProtocolError);
  }
});

Deno.test("truncated CLIENT_HELLO at every length is refused by the server with ProtocolError, before any signature", async () => {
  const ids = await identities();
  const { client } = await handshakePair("A");
  const hello = await client.start();
  const spy = spySign();
  try {
    for (let n = 0; n < hello.length; n++) {
      const { server } = await handshakePair("A");
      await assertRejectsIm(
        () => server.onClientHello(hello.subarray(0, n)),
        ProtocolError,
        undefined,
        `length ${n}`,
      );
      assert.equal(server.state, "failed");
    }
    assert.equal(spy.signedWith(ids.server.sign), 0);
  } finally {
    spy.restore();
  }
  const { server } = await handshakePair("A");
  await assertRejectsIm(
    () => server.onClientHello(concat(hello, new Uint8Array([0]))),
    ProtocolError,
    "trailing-bytes",
  );
});

Deno.test("truncated SERVER_HELLO at every length is refused by the client with ProtocolError", async () => {
  const { client, server } = await handshakePair("A");
  const serverHello = await server.onClientHello(await client.start());
  for (let n = 0; n < serverHello.length; n++) {
    const { client: c } = await handshakePair("A");
    await c.start();
    await assertRejectsIm(
      () => c.onServerHello(serverHello.subarray(0, n)),
      ProtocolError,
      undefined,
      `length ${n}`,
    );
  }
  const { client: c } = await handshakePair("A");
  await c.start();
  await assertRejectsIm(
    () => c.onServerHello(concat(serverHello, new Uint8Array(3))),
    ProtocolError,
    "trailing-bytes",
  );
});

Deno.test("truncated or extended CLIENT_AUTH and SERVER_KEY are refused with ProtocolError", async () => {
  const p = await upToClientAuth("A");
  const q = await upToClientAuth("A");
  const [key] = await q.server.onClientAuth(q.auth);
  for (const n of [0, 1, 2, 3, 100, p.auth.length - 1, -1]) {
    const r = await upToClientAuth("A");
    const bytes = n === -1
      ? concat(p.auth, new Uint8Array(1))
      : p.auth.subarray(0, n);
    await assertRejectsIm(
      () => r.server.onClientAuth(bytes),
      ProtocolError,
      undefined,
      `CLIENT_AUTH ${n}`,
    );
  }
  for (const n of [0, 1, 2, 3, 100, key!.length - 1, -1]) {
    const r = await upToClientAuth("A");
    const bytes = n === -1
      ? concat(key!, new Uint8Array(1))
      : key!.subarray(0, n);
    await assertRejectsIm(
      () => r.client.onServerKey(bytes),
      ProtocolError,
      undefined,
      `SERVER_KEY ${n}`,
    );
  }
});

Deno.test("a version mismatch is refused on both sides with ProtocolError version", async () => {
  const { client, server } = await handshakePair("A");
  const hello = decodeClientHello(await client.start());
  const e = await assertRejectsIm(
    () =>
      server.onClientHello(
        encodeClientHello({ ...hello, version: PROTOCOL_VERSION + 1 }),
      ),
    ProtocolError,
    "version",
  );
  assert.match(e.message, /version 2/);

  const p = await handshakePair("A");
  const m = decodeServerHello(
    await p.server.onClientHello(await p.client.start()),
  );
  for (const version of [0, 2, 255]) {
    const c = await handshakePair("A");
    await c.client.start();
    await assertRejectsIm(
      () => c.client.onServerHello(encodeServerHello({ ...m, version })),
      ProtocolError,
      "version",
    );
  }
});

Deno.test("a client ephemeral key that is a low-order point ends the login with a typed error", async () => {
  const ids = await identities();
  const { server } = await handshakePair("A");
  const hello = encodeClientHello({
    version: 1,
    user: "A",
    nonce: randomBytes(32),
    ephemeral: new Uint8Array(32),
  });
  const serverHello = await server.onClientHello(hello);
  const th = await loginTranscript(hello, serverHello);
  const sig = await signPss(
    ids.A.sign,
    signedContent(Label.CLIENT_SIGNATURE, th),
  );
  await assertRejectsIm(
    () => server.onClientAuth(encodeClientAuth({ signature: sig })),
    ProtocolError,
    "bad-ephemeral",
  );
});

// ---------------------------------------------------------------------------
// Rule 2.9: usernames

const BAD_NAMES = [
  "../x",
  "a".repeat(33),
  "",
  "é",
  "名前",
  "a b",
  "a/b",
  "a.b",
  "a\u0000",
  "x".repeat(300),
];

Deno.test("the server refuses invalid usernames (../x, 33 chars, empty, non-ASCII) before looking them up", async () => {
  for (const user of BAD_NAMES) {
    const looked: string[] = [];
    const { server } = await handshakePair("A", {
      lookupUser: (n) => {
        looked.push(n);
        return undefined;
      },
    });
    const hello = new Uint8Array([
      FrameKind.CLIENT_HELLO,
      PROTOCOL_VERSION,
      ...[utf8(user).subarray(0, 255)].flatMap((u) => [u.length, ...u]),
      ...randomBytes(64),
    ]);
    await assertRejectsIm(
      () => server.onClientHello(hello),
      ProtocolError,
      "bad-username",
      JSON.stringify(user),
    );
    assert.deepEqual(looked, []);
  }
});

Deno.test("the server accepts usernames at the edges of rule 2.9: 1 and 32 characters of A-Z a-z 0-9 _ -", async () => {
  for (const user of ["a", "Z".repeat(32), "A-_z09"]) {
    const { client, server } = await handshakePair(user);
    const reply = await server.onClientHello(await client.start());
    assert.equal(reply[0], FrameKind.SERVER_HELLO);
    assert.equal(server.claimedUser, user);
  }
});

Deno.test("the client refuses an invalid username before sending anything, with a typed error", async () => {
  const ids = await identities();
  for (const user of BAD_NAMES) {
    const client = new ClientHandshake({
      user,
      identity: ids.A,
      pinnedServer: ids.serverPinned,
    });
    const e = await assertRejectsIm(
      () => client.start(),
      AuthError,
      "bad-username",
      JSON.stringify(user),
    );
    assert.ok(e instanceof ImError);
    assert.equal(client.state, "failed");
  }
});

// ---------------------------------------------------------------------------
// Decoders: typed errors only

const DECODERS: [string, (p: Uint8Array) => unknown, Uint8Array][] = [
  [
    "CLIENT_HELLO",
    decodeClientHello,
    encodeClientHello({
      version: 1,
      user: "alice",
      nonce: randomBytes(32),
      ephemeral: randomBytes(32),
    }),
  ],
  [
    "SERVER_HELLO",
    decodeServerHello,
    encodeServerHello({
      version: 1,
      nonce: randomBytes(32),
      ephemeral: randomBytes(32),
      serverPublicKey: randomBytes(294),
      signature: randomBytes(256),
    }),
  ],
  [
    "CLIENT_AUTH",
    decodeClientAuth,
    encodeClientAuth({ signature: randomBytes(256) }),
  ],
  [
    "SERVER_KEY",
    decodeServerKey,
    encodeServerKey({
      sealedSessionKey: randomBytes(256),
      tag: randomBytes(32),
    }),
  ],
  [
    "ERROR",
    decodeErrorFrame,
    encodeErrorFrame({ code: 2, message: "refused" }),
  ],
];

Deno.test("every login message decoder throws ProtocolError at every truncation and for trailing bytes", () => {
  for (const [name, decode, good] of DECODERS) {
    decode(good);
    for (let n = 0; n < good.length; n++) {
      assertThrowsIm(
        () => decode(good.subarray(0, n)),
        ProtocolError,
        undefined,
        `${name} length ${n}`,
      );
    }
    for (const extra of [1, 2, 1000, 100_000]) {
      assertThrowsIm(
        () => decode(concat(good, new Uint8Array(extra))),
        ProtocolError,
        "trailing-bytes",
        `${name} +${extra}`,
      );
    }
  }
});

Deno.test("every login message decoder throws only ImError for 2000 seeded random and mutated inputs each", () => {
  const rnd = seededRandom(20250101);
  let thrown = 0;
  for (const [name, decode, good] of DECODERS) {
    for (let i = 0; i < 2000; i++) {
      let input: Uint8Array;
      if (i % 2 === 0) {
        // Random bytes behind the right kind byte.
        input = concat(
          good.subarray(0, 1),
          rnd.bytes(rnd.int(good.length + 20)),
        );
      } else {
        // The valid message with a few random bytes changed.
        input = new Uint8Array(good);
        for (let k = 0; k < 1 + rnd.int(4); k++) {
          input[rnd.int(input.length)] = rnd.int(256);
        }
      }
      try {
        decode(input);
      } catch (e) {
        assert.ok(e instanceof ImError, `${name} input ${i}: ${e}`);
        thrown++;
      }
    }
  }
  assert.ok(thrown > 2000, `thrown ${thrown}`);
});

Deno.test("the handshake steps throw only ImError for seeded random and mutated frames", async () => {
  const rnd = seededRandom(77);
  const p = await upToClientAuth("A");
  const [key] = await p.server.onClientAuth(p.auth);
  const mutate = (good: Uint8Array, i: number) => {
    if (i % 2 === 0) {
      return concat(good.subarray(0, 1), rnd.bytes(rnd.int(good.length + 8)));
    }
    const m = new Uint8Array(good);
    for (let k = 0; k < 1 + rnd.int(3); k++) {
      m[rnd.int(m.length)] = rnd.int(256);
    }
    return m;
  };
  const check = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (e) {
      assert.ok(e instanceof ImError, `${what}: ${e}`);
    }
  };
  for (let i = 0; i < 200; i++) {
    const { client, server } = await handshakePair("A");
    await check(
      `CLIENT_HELLO ${i}`,
      () => server.onClientHello(mutate(p.hello, i)),
    );
    await client.start();
    await check(
      `SERVER_HELLO ${i}`,
      () => client.onServerHello(mutate(p.serverHello, i)),
    );
  }
  for (let i = 0; i < 20; i++) {
    const r = await upToClientAuth("A");
    await check(
      `CLIENT_AUTH ${i}`,
      () => r.server.onClientAuth(mutate(p.auth, i)),
    );
    await check(`SERVER_KEY ${i}`, () => r.client.onServerKey(mutate(key!, i)));
  }
});

Deno.test("sequence numbers start at 0 in both directions of the server link: each FINISHED is record 0, the next record is 1 (PROTOCOL.md section 4)", async () => {
  const { client, server } = await handshakePair("A");
  const auth = await client.onServerHello(
    await server.onClientHello(await client.start()),
  );
  const [key, serverFin] = await server.onClientAuth(auth);
  await client.onServerKey(key!);
  const clientFin = await client.onServerFinished(serverFin!);
  await server.onClientFinished(clientFin);
  const seqOf = (rec: Uint8Array) => new DataView(rec.buffer).getBigUint64(2);
  assert.equal(serverFin![1], RecordType.FINISHED);
  assert.equal(seqOf(serverFin!), 0n, "s2c FINISHED");
  assert.equal(clientFin[1], RecordType.FINISHED);
  assert.equal(seqOf(clientFin), 0n, "c2s FINISHED");
  // Both openers accepted record 0 and wait for 1; both sealers are at 1.
  for (const r of [client.result, server.result]) {
    assert.equal(r.opener.nextSeq, 1n);
    assert.equal(r.sealer.nextSeq, 1n);
  }
  const next = server.result.sealer.seal(RecordType.DATA, utf8("{}"));
  assert.equal(seqOf(next), 1n);
  const opened = client.result.opener.open(next);
  assert.equal(opened.seq, 1n);
  assert.equal(opened.lost, 0n);
});
