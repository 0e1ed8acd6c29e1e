/**
 * The scripted conversation of `im demo`: throwaway keys in memory, a
 * server and two clients on loopback, every byte between them recorded by a
 * {@link TcpProxy}, and a transcript printed beside a hex sample of the
 * wire, with a check that no message crossed it in clear.
 *
 * @example
 * ```ts ignore
 * const code = await runDemoScript((line) => console.log(line));
 * ```
 * @module
 */

import { utf8 } from "../lib/util/mod.ts";
import {
  ChatClient,
  type ClientUi,
  MemoryMailVault,
  type UiEvent,
} from "../lib/client/mod.ts";
import {
  generateRsaKeyPair,
  loadPrivateIdentity,
  loadPublicIdentity,
} from "../lib/crypto/mod.ts";
import { TcpProxy } from "../lib/wire/mod.ts";
import { ImServer } from "../lib/server/mod.ts";
import { formatEvent } from "../lib/ui/mod.ts";

/** RSA size of the demo's throwaway keys (smaller than the default, to start fast; they never leave memory). */
export const DEMO_BITS = 2048;

class Recorder implements ClientUi {
  readonly events: UiEvent[] = [];
  #waiters: Array<() => void> = [];
  constructor(readonly name: string, readonly out: (line: string) => void) {}
  print(ev: UiEvent): void {
    this.events.push(ev);
    for (
      const line of formatEvent(ev, { color: false, self: this.name }).split(
        "\n",
      )
    ) {
      this.out(`  ${this.name.padEnd(2)}| ${line}`);
    }
    for (const w of this.#waiters.splice(0)) w();
  }
  setPeer(): void {}
  async waitFor(
    what: string,
    pred: (ev: UiEvent) => boolean,
    ms = 10_000,
  ): Promise<void> {
    const deadline = Date.now() + ms;
    let seen = 0;
    for (;;) {
      for (; seen < this.events.length; seen++) {
        if (pred(this.events[seen]!)) return;
      }
      if (Date.now() > deadline) {
        throw new Error(`demo: ${this.name} did not see ${what}`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

function hexLines(bytes: Uint8Array, label: string, max = 4): string[] {
  const out: string[] = [];
  for (let off = 0; off < bytes.length && out.length < max; off += 16) {
    const row = [...bytes.subarray(off, off + 16)].map((b) =>
      b.toString(16).padStart(2, "0")
    ).join(" ");
    out.push(
      `  ${label.padEnd(12)} ${off.toString(16).padStart(4, "0")}  ${row}`,
    );
  }
  return out;
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Run the demo.
 * @param out where lines go
 * @returns exit code: 0 when the script ran and no message crossed the wire in clear
 */
export async function runDemoScript(
  out: (line: string) => void,
): Promise<number> {
  out(
    `im demo: making throwaway ${DEMO_BITS}-bit keys in memory for the server, A and B...`,
  );
  const [s, a, b] = await Promise.all(
    [1, 2, 3].map(() => generateRsaKeyPair(DEMO_BITS)),
  );
  const serverId = await loadPrivateIdentity(s!.privatePem, "demo server key");
  const pinned = await loadPublicIdentity(s!.publicPem, "demo server key");
  const aId = await loadPrivateIdentity(a!.privatePem, "demo key of A");
  const bId = await loadPrivateIdentity(b!.privatePem, "demo key of B");
  const clients = new Map([["A", aId.publicIdentity], [
    "B",
    bId.publicIdentity,
  ]]);
  const server = await ImServer.start({ port: 0, identity: serverId, clients });
  const serverTap = TcpProxy.start({
    target: { hostname: "127.0.0.1", port: server.port },
  });
  const hostPort = freePort();
  const peerTap = TcpProxy.start({
    target: { hostname: "127.0.0.1", port: hostPort },
  });
  out(
    `server on 127.0.0.1:${server.port} (key ${serverId.fingerprint}); the clients reach it through a wire tap on 127.0.0.1:${serverTap.port}, and B reaches A through another`,
  );
  out("");
  out("Transcript:");
  const uiA = new Recorder("A", out), uiB = new Recorder("B", out);
  const common = {
    pinnedServer: pinned,
    serverHost: "127.0.0.1",
    serverPort: serverTap.port,
    reconnect: false,
  };
  let A: ChatClient | undefined, B: ChatClient | undefined;
  const said = [
    "Hello B, this is A. Can you read me?",
    "Loud and clear, A. The server only saw ciphertext.",
    "B, this mail waits for you while you are away.",
    "Welcome to the team room, B.",
    "Thanks A; one copy on the server for all of us.",
  ];
  // B's mailbox keys outlive its first login (im chat keeps them in the key
  // directory; the demo in memory).
  const vaultB = new MemoryMailVault();
  try {
    A = await ChatClient.start({
      ...common,
      user: "A",
      identity: aId,
      ui: uiA,
      listenPort: hostPort,
      advertise: `127.0.0.1:${peerTap.port}`,
    });
    const startB = () =>
      ChatClient.start({
        ...common,
        user: "B",
        identity: bId,
        ui: uiB,
        mailVault: vaultB,
      });
    B = await startB();
    const type = async (who: ChatClient, ui: Recorder, line: string) => {
      out(`  ${ui.name.padEnd(2)}> ${line}`);
      await who.handleLine(line);
    };
    await type(A, uiA, "!session host");
    await uiA.waitFor(
      "hosting",
      (e) => e.kind === "system" && e.text.startsWith("Hosting"),
    );
    await type(B, uiB, "!list");
    await uiB.waitFor("the list", (e) => e.kind === "list");
    await type(B, uiB, "!session A");
    await uiA.waitFor(
      "the session",
      (e) => e.kind === "session" && e.state === "started",
    );
    await uiB.waitFor(
      "the session",
      (e) => e.kind === "session" && e.state === "started",
    );
    await type(A, uiA, said[0]!);
    await uiB.waitFor(
      "A's message",
      (e) => e.kind === "message" && e.direction === "in",
    );
    await type(B, uiB, said[1]!);
    await uiA.waitFor(
      "B's message",
      (e) => e.kind === "message" && e.direction === "in",
    );
    await uiB.waitFor("a receipt", (e) => e.kind === "receipt");
    await type(B, uiB, "!list");
    await uiB.waitFor(
      "the list",
      (e) => e.kind === "list" && e.users.every((u) => u.state === "BUSY"),
    );
    await type(A, uiA, "!disconnect");
    await uiA.waitFor(
      "the end",
      (e) => e.kind === "session" && e.state === "ended",
    );
    await uiB.waitFor(
      "the end",
      (e) => e.kind === "session" && e.state === "ended",
    );
    // A hosted, so A hosts on after the session (issue 11 item 5); a second
    // !disconnect stops hosting.
    await uiA.waitFor(
      "still hosting",
      (e) => e.kind === "system" && e.text.startsWith("Still hosting"),
    );
    await type(A, uiA, "!disconnect");
    await uiA.waitFor(
      "stopped hosting",
      (e) => e.kind === "system" && e.text === "Stopped hosting",
    );
    // Mail: B logs out, A writes anyway, B reads it when it is back.
    await type(B, uiB, "!quit");
    await B.quit();
    B = undefined;
    await type(A, uiA, `!msg B ${said[2]!}`);
    await uiA.waitFor(
      "the stored receipt",
      (e) => e.kind === "receipt" && e.via === "mail" && e.status === "stored",
    );
    out("  B | (logs in again)");
    B = await startB();
    await uiB.waitFor(
      "A's mail",
      (e) => e.kind === "mail" && e.direction === "in",
    );
    await uiA.waitFor(
      "the delivered receipt",
      (e) =>
        e.kind === "receipt" && e.via === "mail" && e.status === "delivered",
    );
    await type(B, uiB, "!list");
    await uiB.waitFor(
      "the list",
      (e) => e.kind === "list" && e.users.every((u) => u.state === "IDLE"),
    );
    // A room (PROTOCOL.md section 10): sealed once for all its members.
    await type(A, uiA, "!room create team B");
    await uiB.waitFor(
      "the room",
      (e) => e.kind === "room" && e.room === "team" && e.change === "created",
    );
    await type(A, uiA, `#team ${said[3]!}`);
    await uiB.waitFor(
      "A's room message",
      (e) => e.kind === "message" && e.room === "team" && e.direction === "in",
    );
    await type(B, uiB, `#team ${said[4]!}`);
    await uiA.waitFor(
      "B's room message",
      (e) => e.kind === "message" && e.room === "team" && e.direction === "in",
    );
  } finally {
    await A?.quit();
    await B?.quit();
    await server.close();
    await serverTap.close();
    await peerTap.close();
  }
  const wires = [
    { name: "server link", tap: serverTap },
    { name: "peer link", tap: peerTap },
  ];
  out("");
  out(
    "On the wire (first bytes each way; every frame is u32 length || kind || ...):",
  );
  let total = 0, leaks = 0;
  for (const { name, tap } of wires) {
    for (const dir of ["up", "down"] as const) {
      const bytes = tap.bytes(dir, 0);
      total += tap.bytes(dir).length;
      for (
        const l of hexLines(bytes, `${name} ${dir === "up" ? "->" : "<-"}`)
      ) out(l);
    }
    for (const text of said) if (contains(tap.bytes(), utf8(text))) leaks++;
  }
  out("");
  out(
    leaks === 0
      ? `Checked ${total} bytes captured on both links: no message appears in clear.`
      : `FAILED: ${leaks} message(s) appear in clear on the wire`,
  );
  return leaks === 0 ? 0 : 1;
}
