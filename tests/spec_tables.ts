/**
 * Renders PROTOCOL.md section 5's message tables from the schemas the
 * decoder checks with (`CLIENT_TO_SERVER`, `SERVER_TO_CLIENT`,
 * `PEER_TO_PEER` in `lib/proto/messages.ts`) and their documentation
 * (`MESSAGE_DOCS`, `FIELD_TYPE_DOCS`), so the spec states the type of every
 * field and cannot drift from the code (issue 17 item 7).
 *
 * The tables go between the markers {@link BEGIN} and {@link END} in
 * PROTOCOL.md. `tests/spec_tables_test.ts` fails when the block there is not
 * what this renders; `deno task spec` rewrites it.
 *
 * Run: `deno task spec` (or `deno run --allow-read=PROTOCOL.md
 * --allow-write=PROTOCOL.md tests/spec_tables.ts`).
 * @module
 */

import {
  CLIENT_TO_SERVER,
  FIELD_TYPE_DOCS,
  type FieldType,
  MESSAGE_DOCS,
  PEER_TO_PEER,
  SERVER_TO_CLIENT,
} from "../lib/proto/messages.ts";

/** Opens the generated block in PROTOCOL.md. */
export const BEGIN = "<!-- generated: messages -->";
/** Closes it. */
export const END = "<!-- end generated -->";

type Schema = Readonly<Record<string, Readonly<Record<string, FieldType>>>>;
type Docs = Readonly<
  Record<
    string,
    { about: string; fields: Readonly<Record<string, string>> }
  >
>;

/** The three directions, in the order the spec lists them. */
const DIRECTIONS: Array<[string, string, Schema, Docs]> = [
  [
    "Client -> server",
    "CLIENT_TO_SERVER",
    CLIENT_TO_SERVER,
    MESSAGE_DOCS.CLIENT_TO_SERVER,
  ],
  [
    "Server -> client",
    "SERVER_TO_CLIENT",
    SERVER_TO_CLIENT,
    MESSAGE_DOCS.SERVER_TO_CLIENT,
  ],
  [
    "Peer <-> peer, inside a peer session",
    "PEER_TO_PEER",
    PEER_TO_PEER,
    MESSAGE_DOCS.PEER_TO_PEER,
  ],
];

/** A table cell: pipes escaped (GFM), so `kind || body` stays in its cell. */
function cell(text: string): string {
  if (text.includes("\n")) throw new Error(`Cell with a line break: ${text}`);
  return text.replaceAll("|", "\\|");
}

/** A Markdown table padded the way `deno fmt` pads it. */
function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) =>
    Math.max(3, ...all.map((r) => r[i]!.length))
  );
  const line = (r: string[]) =>
    `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [
    line(header),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...rows.map(line),
  ].join("\n");
}

/**
 * One field as the table shows it: its name, the type the decoder checks,
 * and what it holds.
 */
function field(name: string, type: FieldType, doc: string): string {
  if (doc.includes(";")) {
    throw new Error(`Field doc of "${name}" has a ";", the field separator`);
  }
  return `\`${name}\` (${FIELD_TYPE_DOCS[type]}): ${doc}`;
}

/**
 * The rows of one direction, checking that docs and schema name the same
 * messages and fields.
 */
function rows(what: string, schema: Schema, docs: Docs): string[][] {
  const names = Object.keys(schema);
  const documented = Object.keys(docs);
  if (names.join() !== documented.join()) {
    throw new Error(
      `${what}: the schema has ${names.join(", ")}, the docs ${
        documented.join(", ")
      }`,
    );
  }
  return names.map((t) => {
    const fields = Object.entries(schema[t]!);
    const doc = docs[t]!;
    const docFields = Object.keys(doc.fields);
    if (fields.map(([f]) => f).join() !== docFields.join()) {
      throw new Error(
        `${what} ${t}: the schema has fields ${
          fields.map(([f]) => f).join(", ")
        }, the docs ${docFields.join(", ")}`,
      );
    }
    const shown = fields.length === 0
      ? "(none)"
      : fields.map(([f, type]) => field(f, type, doc.fields[f]!)).join("; ");
    return [`\`${t}\``, cell(shown), cell(doc.about)];
  });
}

/**
 * The generated block's content, between the markers (exclusive).
 * @returns Markdown, as `deno fmt` leaves it
 */
export function renderMessageTables(): string {
  const parts = DIRECTIONS.map(([title, constant, schema, docs]) =>
    `${title} (\`${constant}\`):\n\n${
      table(
        ["`t`", "fields: `name` (checked type): what it holds", "meaning"],
        [
          ...rows(constant, schema, docs),
        ],
      )
    }`
  );
  return `\n\n${parts.join("\n\n")}\n\n`;
}

/**
 * The block currently between the markers of `doc`.
 * @param doc PROTOCOL.md's text
 * @returns the content between the markers
 * @throws {Error} when the markers are missing or repeated
 */
export function generatedBlock(doc: string): string {
  const a = doc.indexOf(BEGIN), b = doc.indexOf(END);
  if (
    a < 0 || b < a || doc.indexOf(BEGIN, a + 1) >= 0 ||
    doc.indexOf(END, b + 1) >= 0
  ) {
    throw new Error(`PROTOCOL.md needs exactly one ${BEGIN} ... ${END} block`);
  }
  return doc.slice(a + BEGIN.length, b);
}

/**
 * `doc` with its generated block replaced by what the schemas render now.
 * @param doc PROTOCOL.md's text
 * @returns the new text
 */
export function withFreshTables(doc: string): string {
  const old = generatedBlock(doc);
  const a = doc.indexOf(BEGIN) + BEGIN.length;
  return doc.slice(0, a) + renderMessageTables() +
    doc.slice(a + old.length);
}

if (import.meta.main) {
  const path = new URL("../PROTOCOL.md", import.meta.url);
  const doc = await Deno.readTextFile(path);
  const next = withFreshTables(doc);
  if (next === doc) {
    console.log("PROTOCOL.md: the message tables are up to date");
  } else {
    await Deno.writeTextFile(path, next);
    console.log("PROTOCOL.md: message tables rewritten from the schemas");
  }
}
