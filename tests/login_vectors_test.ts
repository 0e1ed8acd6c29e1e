/**
 * Runs `tests/vectors/login_vectors.json` (issue 17 item 11) against the
 * real login code: first step by step with the functions of `lib/proto` and
 * `lib/crypto`, then as a whole with the two state machines
 * (`ClientHandshake`, `ServerHandshake`) fed the vectors' nonces, ephemeral
 * keys and session key, which must then send exactly the vectors' bytes.
 *
 * RSA-PSS and RSA-OAEP are randomized: their outputs in the file are inputs
 * here, and they are checked (the signatures verify, the ciphertext opens
 * to the session key), not compared. To run the state machines on them, the
 * test stands in for `crypto.subtle.sign` and `crypto.subtle.encrypt` while
 * they run: each call is checked to sign or seal exactly what PROTOCOL.md
 * says, with the right key, and answered with the file's bytes.
 */

import assert from "node:assert/strict";
import { concat, utf8 } from "../lib/util/mod.ts";
import { encodeFrame } from "../lib/wire/mod.ts";
import {
  ClientHandshake,
  type ClientHello,
  decodeClientAuth,
  decodeClientHello,
  decodeServerHello,
  decodeServerKey,
  encodeClientAuth,
  encodeClientHello,
  encodeServerHello,
  encodeServerKey,
  ServerHandshake,
} from "../lib/proto/mod.ts";
import {
  loginTranscript,
  serverKeyTag,
  signedContent,
} from "../lib/proto/_login.ts";
import {
  decryptOaep,
  deriveDirectionKeys,
  deriveKey,
  Label,
  loadPrivateIdentity,
  loadPublicIdentity,
  sharedSecret,
  transcriptHash,
  verifyPss,
} from "../lib/crypto/mod.ts";
import { RecordOpener, RecordSealer, RecordType } from "../lib/record/mod.ts";
import { flipBit } from "./_helpers.ts";
import {
  buildLoginVectors,
  type LoginVectorFile,
  readLoginVectors,
  x25519Pair,
} from "./vectors/make_login_vectors.ts";

const file = (await readLoginVectors()) as LoginVectorFile;
const inp = file.inputs, out = file.outputs;
const hex = (s: string) => Uint8Array.fromHex(s);
const toHex = (b: Uint8Array) => b.toHex();

const ids = {
  client: await loadPrivateIdentity(inp.clientPrivateKeyPem, "client key"),
  clientPublic: await loadPublicIdentity(inp.clientPublicKeyPem, "client"),
  server: await loadPrivateIdentity(inp.serverPrivateKeyPem, "server key"),
  serverPublic: await loadPublicIdentity(inp.serverPublicKeyPem, "server"),
};

Deno.test("login_vectors.json is exactly what make_login_vectors.ts builds from its fixed inputs (reproducible)", async () => {
  assert.deepEqual(file, await buildLoginVectors(inp));
});

Deno.test("login vectors, step by step with lib/proto and lib/crypto: every message, transcript hash and key (PROTOCOL.md section 3)", async () => {
  // The RSA keys: both halves of each pair belong together, and the
  // server's fingerprint is the one the file states.
  assert.equal(toHex(ids.server.publicDer), out.server_spki);
  assert.equal(toHex(ids.serverPublic.fingerprintBytes), out.fp_server);
  assert.equal(ids.serverPublic.fingerprint, out.fp_server_text);
  assert.equal(ids.client.fingerprint, ids.clientPublic.fingerprint);

  // X25519 from the fixed scalars.
  const ephC = await x25519Pair(hex(inp.eph_c_private));
  const ephS = await x25519Pair(hex(inp.eph_s_private));
  assert.equal(toHex(ephC.publicRaw), out.eph_c);
  assert.equal(toHex(ephS.publicRaw), out.eph_s);

  // CLIENT_HELLO.
  const hello: ClientHello = {
    version: inp.version,
    user: inp.user,
    nonce: hex(inp.nonce_c),
    ephemeral: ephC.publicRaw,
  };
  assert.equal(toHex(encodeClientHello(hello)), out.client_hello);
  assert.deepEqual(decodeClientHello(hex(out.client_hello)), hello);

  // th, and what each side signs.
  const th = await loginTranscript(
    hello,
    inp.version,
    hex(inp.nonce_s),
    ids.serverPublic.fingerprintBytes,
    ephS.publicRaw,
  );
  assert.equal(toHex(th), out.th);
  const serverSigned = signedContent(Label.SERVER_SIGNATURE, th);
  const clientSigned = signedContent(Label.CLIENT_SIGNATURE, th);
  assert.equal(toHex(serverSigned), out.server_signed);
  assert.equal(toHex(clientSigned), out.client_signed);

  // Signatures are checked, not compared; an altered one fails.
  const sigS = hex(inp.sig_s), sigC = hex(inp.sig_c);
  assert.ok(await verifyPss(ids.serverPublic.verify, sigS, serverSigned));
  assert.ok(await verifyPss(ids.clientPublic.verify, sigC, clientSigned));
  assert.ok(!await verifyPss(ids.serverPublic.verify, sigS, clientSigned));
  assert.ok(
    !await verifyPss(ids.clientPublic.verify, flipBit(sigC, 9), clientSigned),
  );

  // SERVER_HELLO, CLIENT_AUTH, SERVER_KEY.
  const serverHello = {
    version: inp.version,
    nonce: hex(inp.nonce_s),
    ephemeral: ephS.publicRaw,
    serverPublicKey: ids.server.publicDer,
    signature: sigS,
  };
  assert.equal(toHex(encodeServerHello(serverHello)), out.server_hello);
  assert.deepEqual(decodeServerHello(hex(out.server_hello)), serverHello);
  assert.equal(toHex(encodeClientAuth({ signature: sigC })), out.client_auth);
  assert.deepEqual(decodeClientAuth(hex(out.client_auth)).signature, sigC);
  const oaep = hex(inp.oaep_ciphertext);
  // The tag the client checks before it decrypts (section 3, SERVER_KEY).
  const tag = await serverKeyTag(
    await sharedSecret(ephC, ephS.publicRaw),
    th,
    oaep,
  );
  assert.equal(toHex(tag), out.server_key_tag);
  assert.equal(
    toHex(encodeServerKey({ sealedSessionKey: oaep, tag })),
    out.server_key,
  );
  assert.deepEqual(decodeServerKey(hex(out.server_key)), {
    sealedSessionKey: oaep,
    tag,
  });

  // The OAEP ciphertext opens to the session key (checked, not compared).
  const sessionKey = await decryptOaep(
    ids.client.decrypt,
    oaep,
    utf8(Label.SESSION_KEY),
  );
  assert.equal(toHex(sessionKey), inp.session_key);

  // th2, the X25519 secret and the key schedule.
  const th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [th, sigC, oaep]);
  assert.equal(toHex(th2), out.th2);
  const dh = await sharedSecret(ephC, ephS.publicRaw);
  assert.equal(toHex(dh), out.x25519_shared);
  assert.equal(
    toHex(await sharedSecret(ephS, ephC.publicRaw)),
    out.x25519_shared,
  );
  const ikm = concat(sessionKey, dh);
  assert.equal(toHex(ikm), out.ikm);
  for (const dir of ["c2s", "s2c"] as const) {
    const k = await deriveDirectionKeys(ikm, th2, dir);
    assert.deepEqual(
      { enc: toHex(k.enc), iv: toHex(k.iv), mac: toHex(k.mac) },
      out.keys[dir],
      dir,
    );
  }
  assert.equal(
    toHex(await deriveKey(ikm, th2, Label.TICKET_ENC)),
    out.keys.ticket.enc,
  );
  assert.equal(
    toHex(await deriveKey(ikm, th2, Label.TICKET_MAC)),
    out.keys.ticket.mac,
  );

  // The two FINISHED records: record 0 of each direction, body th2.
  const keysOf = (k: { enc: string; iv: string; mac: string }) => ({
    enc: hex(k.enc),
    iv: hex(k.iv),
    mac: hex(k.mac),
  });
  for (
    const [dir, rec, ts] of [
      ["s2c", out.server_finished, inp.finished_timestamp_s2c],
      ["c2s", out.client_finished, inp.finished_timestamp_c2s],
    ] as const
  ) {
    const sealed = new RecordSealer(keysOf(out.keys[dir])).seal(
      RecordType.FINISHED,
      th2,
      ts,
    );
    assert.equal(toHex(sealed), rec, dir);
    const opened = new RecordOpener(keysOf(out.keys[dir])).open(hex(rec), ts);
    assert.equal(opened.type, RecordType.FINISHED);
    assert.equal(opened.seq, 0n);
    assert.deepEqual(opened.plaintext, th2);
  }

  // The frames on the wire: u32 length, then the payload.
  assert.deepEqual(
    out.wire.map((w) => w.frame),
    [
      out.client_hello,
      out.server_hello,
      out.client_auth,
      out.server_key,
      out.server_finished,
      out.client_finished,
    ].map((p) => toHex(encodeFrame(hex(p)))),
  );
});

/**
 * Run `fn` with the vectors' randomness: `crypto.getRandomValues` gives the
 * queued values (the nonces, the session key), `generateKey` for X25519
 * the queued pairs, `sign` and `encrypt` the file's signature and
 * ciphertext after checking what they were asked to sign or seal, and
 * `Date.now` the clock the test sets. Everything is restored afterwards.
 */
async function withVectorRandomness<T>(
  fn: (
    ctl: {
      random: Uint8Array[];
      pairs: CryptoKeyPair[];
      setClock(ms: number): void;
    },
  ) => Promise<T>,
): Promise<T> {
  const subtle = crypto.subtle as unknown as Record<string, unknown>;
  const saved = {
    getRandomValues: crypto.getRandomValues,
    generateKey: subtle.generateKey,
    sign: subtle.sign,
    encrypt: subtle.encrypt,
    now: Date.now,
  };
  const random: Uint8Array[] = [];
  const pairs: CryptoKeyPair[] = [];
  let clock = inp.finished_timestamp_s2c;
  const realSign = saved.sign as SubtleCrypto["sign"];
  const signatures = new Map([
    [out.server_signed, { sig: inp.sig_s, verify: ids.serverPublic.verify }],
    [out.client_signed, { sig: inp.sig_c, verify: ids.clientPublic.verify }],
  ]);
  const realRandom = saved.getRandomValues as (a: Uint8Array) => Uint8Array;
  crypto.getRandomValues = ((a: Uint8Array): Uint8Array => {
    const next = random.shift();
    if (!next) return realRandom.call(crypto, a);
    assert.equal(a.length, next.length, "a random draw of the vector size");
    a.set(next);
    return a;
  }) as unknown as Crypto["getRandomValues"];
  subtle.generateKey = function (this: SubtleCrypto, ...args: unknown[]) {
    if ((args[0] as { name?: string }).name === "X25519") {
      const pair = pairs.shift();
      assert.ok(pair, "an X25519 key from the vectors");
      return Promise.resolve(pair);
    }
    return (saved.generateKey as (...a: unknown[]) => unknown).apply(
      this,
      args,
    );
  };
  subtle.sign = async function (
    this: SubtleCrypto,
    alg: { name: string; saltLength?: number },
    key: CryptoKey,
    data: BufferSource,
  ) {
    assert.deepEqual(alg, { name: "RSA-PSS", saltLength: 32 });
    const bytes = new Uint8Array(data as ArrayBuffer);
    const expected = signatures.get(toHex(bytes));
    assert.ok(expected, "signs exactly server_signed or client_signed");
    // The right private key: a fresh signature of its own verifies with
    // the public key the file names for this content.
    const fresh = await realSign.call(this, alg, key, bytes);
    assert.ok(await verifyPss(expected.verify, new Uint8Array(fresh), bytes));
    return hex(expected.sig).buffer;
  };
  subtle.encrypt = function (
    this: SubtleCrypto,
    alg: { name: string; label?: BufferSource },
    key: CryptoKey,
    data: BufferSource,
  ) {
    assert.equal(alg.name, "RSA-OAEP");
    assert.deepEqual(
      new Uint8Array(alg.label as ArrayBuffer),
      utf8(Label.SESSION_KEY),
    );
    assert.equal(toHex(new Uint8Array(data as ArrayBuffer)), inp.session_key);
    assert.equal(key.algorithm.name, "RSA-OAEP");
    return Promise.resolve(hex(inp.oaep_ciphertext).buffer);
  };
  Date.now = () => clock;
  try {
    return await fn({ random, pairs, setClock: (ms) => (clock = ms) });
  } finally {
    crypto.getRandomValues = saved.getRandomValues;
    subtle.generateKey = saved.generateKey;
    subtle.sign = saved.sign;
    subtle.encrypt = saved.encrypt;
    Date.now = saved.now;
  }
}

Deno.test("login vectors, whole: ClientHandshake and ServerHandshake fed the vectors' nonces, ephemerals and session key send exactly the vectors' bytes, and agree on th2 and the ticket keys", async () => {
  const ephC = await x25519Pair(hex(inp.eph_c_private));
  const ephS = await x25519Pair(hex(inp.eph_s_private));
  const pairOf = (p: typeof ephC): CryptoKeyPair => ({
    privateKey: p.privateKey,
    publicKey: p.publicKey,
  });
  const directory = new Map([[inp.user, ids.clientPublic]]);
  const client = new ClientHandshake({
    user: inp.user,
    identity: ids.client,
    pinnedServer: ids.serverPublic,
  });
  const server = new ServerHandshake({
    identity: ids.server,
    lookupUser: (name) => directory.get(name),
    decoy: ids.clientPublic,
  });
  await withVectorRandomness(async ({ random, pairs, setClock }) => {
    random.push(hex(inp.nonce_c));
    pairs.push(pairOf(ephC));
    const clientHello = await client.start();
    assert.equal(toHex(clientHello), out.client_hello);

    random.push(hex(inp.nonce_s));
    pairs.push(pairOf(ephS));
    const serverHello = await server.onClientHello(clientHello);
    assert.equal(toHex(serverHello), out.server_hello);

    const clientAuth = await client.onServerHello(serverHello);
    assert.equal(toHex(clientAuth), out.client_auth);

    random.push(hex(inp.session_key));
    setClock(inp.finished_timestamp_s2c);
    const [serverKey, serverFinished] = await server.onClientAuth(clientAuth);
    assert.equal(toHex(serverKey!), out.server_key);
    assert.equal(toHex(serverFinished!), out.server_finished);

    await client.onServerKey(serverKey!);
    setClock(inp.finished_timestamp_c2s);
    const clientFinished = await client.onServerFinished(serverFinished!);
    assert.equal(toHex(clientFinished), out.client_finished);
    await server.onClientFinished(clientFinished);

    assert.equal(random.length + pairs.length, 0, "every value was used");
  });
  assert.equal(client.state, "done");
  assert.equal(server.state, "done");
  for (const r of [client.result, server.result]) {
    assert.equal(toHex(r.transcript), out.th2);
    assert.equal(toHex(r.ticketKeys.enc), out.keys.ticket.enc);
    assert.equal(toHex(r.ticketKeys.mac), out.keys.ticket.mac);
  }
  // The records after FINISHED use the vectors' keys: record 1 each way.
  const keysOf = (k: { enc: string; iv: string; mac: string }) => ({
    enc: hex(k.enc),
    iv: hex(k.iv),
    mac: hex(k.mac),
  });
  const t = inp.finished_timestamp_c2s + 1;
  const fromServer = server.result.sealer.seal(RecordType.DATA, utf8("{}"), t);
  const expected = new RecordSealer(keysOf(out.keys.s2c), 1n).seal(
    RecordType.DATA,
    utf8("{}"),
    t,
  );
  assert.equal(toHex(fromServer), toHex(expected));
  const fromClient = client.result.sealer.seal(RecordType.DATA, utf8("{}"), t);
  assert.equal(
    toHex(fromClient),
    toHex(
      new RecordSealer(keysOf(out.keys.c2s), 1n).seal(
        RecordType.DATA,
        utf8("{}"),
        t,
      ),
    ),
  );
});
