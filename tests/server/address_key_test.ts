/**
 * `addressKey()`: what the per-address caps and the failure penalty count
 * (issue 10 item 10). IPv4 per address, IPv6 per prefix (a /64 unless
 * configured), an IPv4-mapped IPv6 address as its IPv4 address, and every
 * loopback address as one host.
 * @module
 */

import assert from "node:assert/strict";
import {
  addressKey,
  DEFAULT_IPV6_PREFIX_BITS,
  FailurePenalty,
  LoginAdmission,
  LOOPBACK_KEY,
} from "../../lib/server/mod.ts";
import { UsageError } from "../../lib/util/mod.ts";

Deno.test("addressKey() counts IPv6 per /64 by default", () => {
  assert.equal(DEFAULT_IPV6_PREFIX_BITS, 64);
  assert.equal(addressKey("2001:db8:0:1::1"), "2001:db8:0:1::/64");
});

Deno.test("addressKey() gives every spelling of addresses in one /64 the same key", () => {
  const same = [
    "2001:db8:0:1::1",
    "2001:db8:0:1::2",
    "2001:DB8:0:1:FFFF:FFFF:FFFF:FFFF",
    "2001:0db8:0000:0001:0000:0000:0000:0001",
    "2001:db8::1:0:0:0:1",
    "2001:db8:0:1:abcd:ef01:2345:6789",
    "[2001:db8:0:1::7]",
    "2001:db8:0:1::7%eth0",
    "[2001:db8:0:1::7%25eth0]",
    "2001:db8:0:1:0:0:1.2.3.4",
  ];
  for (const a of same) assert.equal(addressKey(a), "2001:db8:0:1::/64", a);
});

Deno.test("addressKey() keeps addresses in different /64s apart", () => {
  const keys = [
    "2001:db8:0:1::1",
    "2001:db8:0:2::1",
    "2001:db8:1:1::1",
    "2001:db9:0:1::1",
    "fe80::1",
    "::2",
  ].map((a) => addressKey(a));
  assert.equal(new Set(keys).size, keys.length, keys.join(" "));
  assert.equal(addressKey("fe80::1%lo"), "fe80::/64");
});

Deno.test("addressKey() truncates to the configured prefix: /48 joins /64s, /128 keeps each address", () => {
  assert.equal(addressKey("2001:db8:0:1::1", 48), "2001:db8::/48");
  assert.equal(addressKey("2001:db8:0:2::1", 48), "2001:db8::/48");
  assert.notEqual(
    addressKey("2001:db8:1::1", 48),
    addressKey("2001:db8:2::1", 48),
  );
  assert.equal(addressKey("2001:db8:0:1::1", 128), "2001:db8:0:1::1/128");
  assert.notEqual(
    addressKey("2001:db8:0:1::1", 128),
    addressKey("2001:db8:0:1::2", 128),
  );
  // Within a group: /56 keeps the upper byte of the fourth group.
  assert.equal(addressKey("2001:db8:0:1ff::1", 56), "2001:db8:0:100::/56");
  assert.equal(addressKey("ffff::1", 1), "8000::/1");
  // Out of range is clamped, not trusted.
  assert.equal(addressKey("2001:db8:0:1::1", 0), addressKey("::1:0:0:0", 1));
  assert.equal(addressKey("2001:db8:0:1::1", 500), "2001:db8:0:1::1/128");
});

Deno.test("addressKey() counts IPv4 per address, as it is", () => {
  assert.equal(addressKey("192.0.2.7"), "192.0.2.7");
  assert.notEqual(addressKey("192.0.2.7"), addressKey("192.0.2.8"));
  assert.equal(addressKey("10.0.0.1", 8), "10.0.0.1", "the prefix is IPv6's");
});

Deno.test("addressKey() counts an IPv4-mapped IPv6 address as its IPv4 address", () => {
  for (
    const a of [
      "::ffff:192.0.2.7",
      "::FFFF:192.0.2.7",
      "[::ffff:192.0.2.7]",
      "::ffff:c000:207",
      "0:0:0:0:0:ffff:192.0.2.7",
    ]
  ) {
    assert.equal(addressKey(a), "192.0.2.7", a);
  }
  assert.notEqual(addressKey("::ffff:192.0.2.8"), "192.0.2.7");
});

Deno.test("addressKey() counts every loopback address, 127.0.0.0/8 and ::1, mapped or not, as one host", () => {
  for (
    const a of [
      "127.0.0.1",
      "127.1.2.3",
      "127.255.255.254",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
    ]
  ) {
    assert.equal(addressKey(a), LOOPBACK_KEY, a);
    assert.equal(addressKey(a, 128), LOOPBACK_KEY, `${a} /128`);
  }
  for (const a of ["128.0.0.1", "126.255.255.255", "::2", "::127.0.0.1"]) {
    assert.notEqual(addressKey(a), LOOPBACK_KEY, a);
  }
});

Deno.test("addressKey() leaves what is not an IP address as it is", () => {
  for (
    const a of [
      "relay",
      "host.example",
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.0.0.1",
      "01.2.3.4",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "12345::1",
      "::ffff:1.2.3.256",
      "g::1",
      ":1",
      "1:",
    ]
  ) {
    assert.equal(addressKey(a), a, JSON.stringify(a));
  }
  // "::1.2.3.4" is IPv6 (the old IPv4-compatible form), not IPv4.
  assert.equal(addressKey("::1.2.3.4"), "::/64");
});

Deno.test("LoginAdmission keyed by addressKey(): two addresses of one /64 share the per-address cap, another /64 does not", () => {
  const gate = new LoginAdmission<string>({ maxTotal: 100, maxPerAddress: 2 });
  assert.deepEqual(gate.admit(addressKey("2001:db8:0:1::a"), "a"), []);
  assert.deepEqual(gate.admit(addressKey("2001:db8:0:1::b"), "b"), []);
  assert.deepEqual(gate.admit(addressKey("2001:db8:0:1::c"), "c"), ["a"]);
  assert.deepEqual(gate.admit(addressKey("2001:db8:0:2::a"), "d"), []);
  assert.equal(gate.countFor(addressKey("2001:db8:0:1::ffff")), 2);
  assert.equal(gate.countFor(addressKey("2001:db8:0:2::1")), 1);
});

Deno.test("FailurePenalty keyed by addressKey(): 127.0.0.1 and ::1 share a penalty; a fresh address in the same /64 is still penalised", () => {
  const p = new FailurePenalty({ limit: 2, basePenaltyMs: 1000 });
  p.recordFailure(addressKey("127.0.0.1"), 0);
  assert.equal(p.recordFailure(addressKey("::1"), 0), 1000);
  assert.equal(p.penalty(addressKey("::ffff:127.0.0.1"), 10), 990);
  p.recordFailure(addressKey("2001:db8:0:1::1"), 0);
  p.recordFailure(addressKey("2001:db8:0:1::2"), 0);
  assert.equal(p.penalty(addressKey("2001:db8:0:1:dead:beef:0:1"), 10), 990);
  assert.equal(p.penalty(addressKey("2001:db8:0:2::1"), 10), 0);
});

Deno.test("im serve --ipv6-prefix takes 1..128 and refuses anything else with a usage error naming the flag", async () => {
  const { runServe, SERVE_USAGE } = await import("../../cmd/serve.ts");
  assert.match(SERVE_USAGE, /--ipv6-prefix N/);
  // Refused before the key directory is looked at: nothing is made there.
  const dir = await Deno.makeTempDir({ prefix: "im-ipv6-prefix-" });
  try {
    for (const bad of ["0", "129", "64.5", "-1", "x"]) {
      const e = await runServe([`--ipv6-prefix=${bad}`, "--keys", dir]).then(
        () => assert.fail(`--ipv6-prefix ${bad} was accepted`),
        (e: unknown) => e,
      );
      assert.ok(e instanceof UsageError && e.code === "bad-flag", String(e));
      assert.match(e.message, /--ipv6-prefix .*from 1 to 128/);
    }
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
