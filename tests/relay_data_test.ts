/**
 * PROTOCOL.md section 6.1 (issue 17 item 8): a relayed peer frame's `data`
 * is the base64 of the frame's payload, `kind || body`, not of the whole
 * frame with its u32 length.
 */

import assert from "node:assert/strict";
import { FrameKind } from "../lib/wire/mod.ts";
import { PEER_COMMIT_BODY_BYTES } from "../lib/proto/mod.ts";
import { withScope } from "./_fixtures.ts";
import { isMsg } from "./attack/_setup.ts";

Deno.test("a joiner's relayed PEER_COMMIT arrives as `relayed` whose data is the padded base64 of 0x23 || ticket_id[16] || commit[32] || commit_mac[32]: the payload, no length prefix, naming the grant's ticket", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    // The host is a bare login, so the test sees what the server relays.
    const host = await s.login(port, "A");
    await host.channel.send({ t: "host", addr: "relay:0", req: 1 });
    await host.tap.waitFor(isMsg("hosting"));
    const joiner = await s.client(port, "B", { relay: true });
    await joiner.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Logged in")
    );
    await joiner.client.handleLine("!session A");
    const grant = await host.tap.waitFor(isMsg("grant"));
    assert.ok(grant.kind === "message" && grant.msg.t === "grant");
    const ev = await host.tap.waitFor(isMsg("relayed"));
    assert.ok(ev.kind === "message" && ev.msg.t === "relayed");
    assert.equal(ev.msg.peer, "B");
    const data = ev.msg.data;
    assert.match(data, /^[A-Za-z0-9+/]+={0,2}$/, "standard base64");
    assert.equal(data.length % 4, 0, "padded");
    const payload = Uint8Array.fromBase64(data);
    assert.equal(payload.length, 1 + PEER_COMMIT_BODY_BYTES, "no u32 length");
    assert.equal(payload.length, 81);
    assert.equal(payload[0], FrameKind.PEER_COMMIT, "starts with the kind");
    assert.equal(payload.subarray(1, 17).toHex(), grant.msg.ticketId);
    // The host side answers nothing: the grant went to it, and it is a
    // bare login in this test. The joiner gives up on its own.
    await joiner.client.handleLine("!disconnect");
  });
});
