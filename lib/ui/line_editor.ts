/**
 * The line editor of the interactive terminal: keys in, actions and one
 * redraw out. Pure: no streams and no clock; terminal.ts feeds it what it
 * reads and writes what {@link LineEditor.render} returns.
 *
 * Issue 11 item 1: the work per chunk read is linear in the chunk and the
 * line, and a chunk is drawn once, whatever its length: a run of printable
 * characters is inserted with one string operation, and the input is one
 * row that scrolls sideways, so a redraw writes at most a row of cells. A
 * paste of 50,000 characters costs one insertion and one row, where
 * `node:readline` measured and redrew the whole line after every
 * character. The line holds at most `maxBytes` UTF-8 bytes: what a paste
 * brings past that is dropped, and {@link LineEditor.feed} says so once.
 *
 * Keys: Enter submits; Backspace, Delete, Left, Right, Home, End, Up and
 * Down (history), Ctrl-A, Ctrl-E, Ctrl-B, Ctrl-F, Ctrl-U, Ctrl-K, Ctrl-W,
 * Alt-B, Alt-F, Alt-D, Ctrl-P, Ctrl-N, Ctrl-L; Tab completes. Ctrl-C
 * clears the line, and quits when pressed again on the empty line; Ctrl-D
 * quits on an empty line and deletes the character under the cursor
 * otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineEditor } from "./line_editor.ts";
 * const ed = new LineEditor({ prompt: "A> ", maxBytes: 100 });
 * assert.deepEqual(ed.feed("hellp\x7fo\r"), [{ kind: "submit", line: "hello" }]);
 * ```
 * @module
 */

import { cellWidth, isCombining, shownAs, textWidth } from "./_width.ts";

/** What the terminal must do after a chunk, in input order. */
export type EditorAction =
  /** Enter: the line as typed (the terminal sanitizes it). */
  | { kind: "submit"; line: string }
  /** Ctrl-C on an empty line right after a Ctrl-C, or Ctrl-D on an empty line. */
  | { kind: "quit"; key: "ctrl-c" | "ctrl-d" }
  /** Ctrl-C that did not quit: the line (`hadText`: a non-empty one) was cleared. */
  | { kind: "interrupt"; hadText: boolean }
  /** Input past `maxBytes` was dropped (said once per line). */
  | { kind: "capped"; maxBytes: number }
  /** Tab found several completions and could not extend the line: show them. */
  | { kind: "candidates"; items: string[] }
  /** Ctrl-L: clear the screen before the redraw. */
  | { kind: "clear-screen" };

/** Options of {@link LineEditor}. */
export interface LineEditorOptions {
  /** The prompt, possibly with SGR colours. */
  prompt: string;
  /** The longest line in UTF-8 bytes; input past it is dropped. */
  maxBytes: number;
  /** Lines kept for Up and Down; default 1000. */
  historySize?: number;
  /**
   * Tab completion in the shape of `completeLine` (completion.ts): the
   * line up to the cursor in, `[candidates, the part they replace]` out.
   */
  complete?: (lineToCursor: string) => [string[], string];
}

/** UTF-8 length of a string (lone surrogates count as U+FFFD, 3 bytes). */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** The code point starting at `i`, as a string ("" at the end). */
function cpAt(s: string, i: number): string {
  const c = s.codePointAt(i);
  return c === undefined ? "" : String.fromCodePoint(c);
}

/** Index of the code point before `i`. */
function cpBefore(s: string, i: number): number {
  if (i <= 0) return 0;
  const low = s.charCodeAt(i - 1);
  if (low >= 0xdc00 && low <= 0xdfff && i >= 2) {
    const high = s.charCodeAt(i - 2);
    if (high >= 0xd800 && high <= 0xdbff) return i - 2;
  }
  return i - 1;
}

// Printable text: anything but C0, DEL and C1 controls.
// deno-lint-ignore no-control-regex -- the controls are keys
const PRINTABLE_RUN = /[^\x00-\x1f\x7f-\x9f]+/y;
// deno-lint-ignore no-control-regex -- removing controls is the point
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/g;
// CSI: parameter bytes, intermediate bytes, final byte (ECMA-48 5.4).
const CSI_BODY = /[\x30-\x3f]*[\x20-\x2f]*/y;
/** An escape sequence longer than this is junk, not a key: dropped. */
const MAX_SEQUENCE = 32;

/** A line editor for one row; see the module doc. */
export class LineEditor {
  #line = "";
  #cursor = 0; // UTF-16 index into #line
  #bytes = 0; // utf8Length(#line)
  #scroll = 0; // UTF-16 index of the first character shown
  #prompt: string;
  #promptWidth: number;
  readonly #maxBytes: number;
  readonly #historySize: number;
  readonly #complete: (line: string) => [string[], string];
  #history: string[] = [];
  #historyAt = -1; // -1: the draft, else an index into #history (0 newest)
  #draft = "";
  #pending = ""; // an escape sequence cut by the end of a chunk
  #afterCR = false; // the last key was CR: a LF right after it is the same Enter
  #lastKeyCtrlC = false;
  #capped = false; // the cap was reported for this line

  /** @param o prompt, byte limit, history size, completion */
  constructor(o: LineEditorOptions) {
    if (!Number.isSafeInteger(o.maxBytes) || o.maxBytes < 1) {
      throw new RangeError(
        `Invalid maxBytes "${o.maxBytes}": expected a positive integer`,
      );
    }
    this.#prompt = o.prompt;
    this.#promptWidth = textWidth(o.prompt);
    this.#maxBytes = o.maxBytes;
    this.#historySize = o.historySize ?? 1000;
    this.#complete = o.complete ?? ((l) => [[], l]);
  }

  /** The line being edited. */
  get line(): string {
    return this.#line;
  }

  /** The cursor, as a UTF-16 index into {@link line}. */
  get cursor(): number {
    return this.#cursor;
  }

  /** Lines submitted, newest first (for tests). */
  get history(): readonly string[] {
    return this.#history;
  }

  /** @param prompt the new prompt (shown at the next render) */
  setPrompt(prompt: string): void {
    this.#prompt = prompt;
    this.#promptWidth = textWidth(prompt);
  }

  /**
   * Take a chunk of input: edit the line, and report what the terminal must
   * do. Work is linear in the chunk and the line. An escape sequence cut
   * by the end of the chunk is kept for the next one.
   * @param text decoded input
   * @returns the actions, in input order; nothing is read after a `quit`
   */
  feed(text: string): EditorAction[] {
    const s = this.#pending + text;
    this.#pending = "";
    const out: EditorAction[] = [];
    let i = 0;
    while (i < s.length) {
      const c = s[i]!;
      if (c === "\x1b") {
        const used = this.#escape(s, i, out);
        if (used === 0) {
          // Cut by the end of the chunk: wait for the rest.
          if (s.length - i <= MAX_SEQUENCE) this.#pending = s.slice(i);
          break;
        }
        i += used;
        continue;
      }
      const code = c.charCodeAt(0);
      if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) {
        const wasCR = this.#afterCR;
        this.#afterCR = c === "\r";
        if (c === "\n" && wasCR) {
          i++;
          continue;
        }
        const quit = this.#control(c, out);
        i++;
        if (quit) break;
        continue;
      }
      PRINTABLE_RUN.lastIndex = i;
      PRINTABLE_RUN.test(s);
      const end = PRINTABLE_RUN.lastIndex;
      this.#keyDone();
      this.#insert(s.slice(i, end), out);
      i = end;
    }
    return out;
  }

  /** A key other than Ctrl-C or CR was handled. */
  #keyDone(): void {
    this.#lastKeyCtrlC = false;
    this.#afterCR = false;
  }

  /** @returns true when the editor quit */
  #control(c: string, out: EditorAction[]): boolean {
    if (c === "\x03") {
      const hadText = this.#line !== "";
      if (!hadText && this.#lastKeyCtrlC) {
        out.push({ kind: "quit", key: "ctrl-c" });
        return true;
      }
      this.#setLine("");
      this.#historyAt = -1;
      this.#lastKeyCtrlC = true;
      out.push({ kind: "interrupt", hadText });
      return false;
    }
    this.#lastKeyCtrlC = false;
    switch (c) {
      case "\r":
      case "\n": {
        const line = this.#line;
        this.#remember(line);
        this.#setLine("");
        this.#historyAt = -1;
        out.push({ kind: "submit", line });
        return false;
      }
      case "\x04": // Ctrl-D
        if (this.#line === "") {
          out.push({ kind: "quit", key: "ctrl-d" });
          return true;
        }
        this.#deleteForward();
        return false;
      case "\x7f":
      case "\x08":
        this.#deleteBack();
        return false;
      case "\t":
        this.#tab(out);
        return false;
      case "\x01":
        this.#cursor = 0;
        return false;
      case "\x05":
        this.#cursor = this.#line.length;
        return false;
      case "\x02":
        this.#left();
        return false;
      case "\x06":
        this.#right();
        return false;
      case "\x0b": // Ctrl-K
        this.#cut(this.#cursor, this.#line.length);
        return false;
      case "\x15": // Ctrl-U
        this.#cut(0, this.#cursor);
        return false;
      case "\x17": // Ctrl-W: back to the start of the word (blank-separated)
        this.#cut(this.#wordStart(/\s/), this.#cursor);
        return false;
      case "\x10": // Ctrl-P
        this.#historyMove(1);
        return false;
      case "\x0e": // Ctrl-N
        this.#historyMove(-1);
        return false;
      case "\x0c": // Ctrl-L
        out.push({ kind: "clear-screen" });
        return false;
      default:
        return false; // other controls do nothing
    }
  }

  /**
   * An escape sequence at `s[i]`.
   * @returns code units used, 0 when the chunk ends inside it
   */
  #escape(s: string, i: number, out: EditorAction[]): number {
    if (i + 1 >= s.length) return 0;
    const next = s[i + 1]!;
    this.#keyDone();
    if (next === "[") {
      CSI_BODY.lastIndex = i + 2;
      CSI_BODY.test(s);
      const f = CSI_BODY.lastIndex;
      if (f >= s.length) return 0;
      const final = s[f]!;
      if (final < "\x40" || final > "\x7e") return f - i; // malformed: drop
      this.#csi(s.slice(i + 2, f), final, out);
      return f + 1 - i;
    }
    if (next === "O") {
      if (i + 2 >= s.length) return 0;
      this.#csi("", s[i + 2]!, out);
      return 3;
    }
    if (next === "\x1b") return 1; // ESC ESC: the first one is nothing
    // Alt + key.
    const alt = cpAt(s, i + 1);
    switch (alt) {
      case "b":
      case "B":
        this.#cursor = this.#wordStart(/[^\p{L}\p{N}]/u);
        break;
      case "f":
      case "F":
        this.#cursor = this.#wordEnd();
        break;
      case "d":
      case "D":
        this.#cut(this.#cursor, this.#wordEnd());
        break;
      case "\x7f":
      case "\x08":
        this.#cut(this.#wordStart(/[^\p{L}\p{N}]/u), this.#cursor);
        break;
    }
    return 1 + alt.length;
  }

  /** A CSI or SS3 key: arrows, Home, End, Delete; anything else is ignored. */
  #csi(params: string, final: string, _out: EditorAction[]): void {
    const word = /;[357]$/.test(params); // Ctrl/Alt + arrow
    switch (final) {
      case "A":
        this.#historyMove(1);
        return;
      case "B":
        this.#historyMove(-1);
        return;
      case "C":
        if (word) this.#cursor = this.#wordEnd();
        else this.#right();
        return;
      case "D":
        if (word) this.#cursor = this.#wordStart(/[^\p{L}\p{N}]/u);
        else this.#left();
        return;
      case "H":
        this.#cursor = 0;
        return;
      case "F":
        this.#cursor = this.#line.length;
        return;
      case "~": {
        const n = params.split(";")[0];
        if (n === "1" || n === "7") this.#cursor = 0;
        else if (n === "4" || n === "8") this.#cursor = this.#line.length;
        else if (n === "3") this.#deleteForward();
        return;
      }
    }
  }

  /** Insert printable text at the cursor, up to the byte limit. */
  #insert(text: string, out: EditorAction[]): void {
    let add = text;
    let bytes = utf8Length(add);
    if (this.#bytes + bytes > this.#maxBytes) {
      // Keep whole code points that fit; report the cut once per line.
      let room = this.#maxBytes - this.#bytes, end = 0;
      for (const c of add) {
        const b = utf8Length(c);
        if (b > room) break;
        room -= b;
        end += c.length;
      }
      add = add.slice(0, end);
      bytes = utf8Length(add);
      if (!this.#capped) {
        this.#capped = true;
        out.push({ kind: "capped", maxBytes: this.#maxBytes });
      }
    }
    if (add === "") return;
    const l = this.#line, c = this.#cursor;
    this.#line = l.slice(0, c) + add + l.slice(c);
    this.#cursor = c + add.length;
    this.#bytes += bytes;
  }

  #setLine(line: string): void {
    this.#line = line;
    this.#cursor = line.length;
    this.#bytes = utf8Length(line);
    this.#scroll = 0;
    this.#capped = false;
  }

  #cut(from: number, to: number): void {
    if (to <= from) return;
    const l = this.#line;
    this.#bytes -= utf8Length(l.slice(from, to));
    this.#line = l.slice(0, from) + l.slice(to);
    this.#cursor = from;
  }

  #deleteBack(): void {
    if (this.#cursor === 0) return;
    this.#cut(cpBefore(this.#line, this.#cursor), this.#cursor);
  }

  #deleteForward(): void {
    const at = this.#cursor;
    if (at >= this.#line.length) return;
    this.#cut(at, at + cpAt(this.#line, at).length);
  }

  /** One character left: a code point and the combining marks on it. */
  #left(): void {
    let i = this.#cursor;
    if (i === 0) return;
    do i = cpBefore(this.#line, i); while (
      i > 0 && isCombining(cpAt(this.#line, i))
    );
    this.#cursor = i;
  }

  #right(): void {
    const l = this.#line;
    let i = this.#cursor;
    if (i >= l.length) return;
    i += cpAt(l, i).length;
    while (i < l.length && isCombining(cpAt(l, i))) i += cpAt(l, i).length;
    this.#cursor = i;
  }

  /** Start of the word before the cursor; `sep` matches what is not a word. */
  #wordStart(sep: RegExp): number {
    const l = this.#line;
    let i = this.#cursor;
    while (i > 0 && sep.test(l[i - 1]!)) i--;
    while (i > 0 && !sep.test(l[i - 1]!)) i--;
    return i;
  }

  #wordEnd(): number {
    const l = this.#line, sep = /[^\p{L}\p{N}]/u;
    let i = this.#cursor;
    while (i < l.length && sep.test(l[i]!)) i++;
    while (i < l.length && !sep.test(l[i]!)) i++;
    return i;
  }

  #remember(line: string): void {
    if (line.trim() === "" || this.#historySize === 0) return;
    const h = this.#history.filter((x) => x !== line);
    h.unshift(line);
    if (h.length > this.#historySize) h.length = this.#historySize;
    this.#history = h;
  }

  /** Up (+1, older) or down (-1, newer) in the history. */
  #historyMove(step: 1 | -1): void {
    const to = this.#historyAt + step;
    if (to < -1 || to >= this.#history.length) return;
    if (this.#historyAt === -1) this.#draft = this.#line;
    this.#historyAt = to;
    const line = to === -1 ? this.#draft : this.#history[to]!;
    this.#setLine(line);
  }

  #tab(out: EditorAction[]): void {
    const before = this.#line.slice(0, this.#cursor);
    const [hits, part] = this.#complete(before);
    if (hits.length === 0) return;
    const common = hits.reduce((a, b) => {
      let n = 0;
      while (n < a.length && n < b.length && a[n] === b[n]) n++;
      return a.slice(0, n);
    });
    if (common.length > part.length && common.startsWith(part)) {
      // Completions are text like typed text: no controls reach the line.
      this.#insert(common.slice(part.length).replace(CONTROLS, ""), out);
    } else if (hits.length > 1) {
      out.push({ kind: "candidates", items: hits });
    }
  }

  /**
   * Draw the prompt and the part of the line around the cursor on the
   * current row, in at most `cols - 1` cells (the last column stays empty,
   * so the row never wraps), and put the cursor in place. The work is
   * linear in `cols`, not in the line.
   * @param cols the terminal's width
   * @returns what to write (starts with CR; ends with the cursor placed)
   */
  render(cols: number): string {
    const room = Math.max(4, cols - 1 - this.#promptWidth);
    const l = this.#line, cur = this.#cursor;
    if (this.#scroll > cur) {
      // The cursor went left of the row: show half a row before it.
      this.#scroll = this.#back(cur, room >> 1);
    } else if (cur === l.length) {
      // At the end: as much of the line as fits before the cursor.
      this.#scroll = this.#back(cur, room);
    } else {
      // Cells from the first shown character to the cursor, up to room + 1.
      let w = 0;
      for (let i = this.#scroll; i < cur && w <= room;) {
        const c = cpAt(l, i);
        w += cellWidth(c);
        i += c.length;
      }
      // Past the right edge: show the cursor at about 3/4 of the row.
      if (w > room) this.#scroll = this.#back(cur, room - (room >> 2));
    }
    let shown = "", used = 0, col = 0;
    for (let i = this.#scroll; i < l.length;) {
      const c = cpAt(l, i);
      const cw = cellWidth(c);
      if (used + cw > room) break;
      if (i < cur) col += cw;
      shown += shownAs(c);
      used += cw;
      i += c.length;
    }
    if (cur >= l.length) col = used;
    const x = this.#promptWidth + col;
    return `\r${this.#prompt}${shown}\x1b[K\r${x > 0 ? `\x1b[${x}C` : ""}`;
  }

  /**
   * The start of the line's part that ends at `end` and fills at most
   * `cells` cells (combining marks stay with their base).
   */
  #back(end: number, cells: number): number {
    const l = this.#line;
    let i = end, w = 0;
    while (i > 0) {
      const j = cpBefore(l, i);
      const cw = cellWidth(cpAt(l, j));
      if (w + cw > cells) break;
      w += cw;
      i = j;
    }
    while (i < end && isCombining(cpAt(l, i))) i += cpAt(l, i).length;
    return i;
  }

  /**
   * The line as one row for the scrollback after Enter: the prompt and as
   * much of the line as fits, `…` where it was cut. Linear in `cols`.
   * @param line the submitted line
   * @param cols the terminal's width
   * @returns the row, without a line break
   */
  echo(line: string, cols: number): string {
    const room = Math.max(4, cols - 1 - this.#promptWidth);
    const pieces: Array<[string, number]> = [];
    let used = 0;
    for (let i = 0; i < line.length;) {
      const c = cpAt(line, i);
      const cw = cellWidth(c);
      if (used + cw > room) {
        while (used + 1 > room && pieces.length > 0) used -= pieces.pop()![1];
        return `${this.#prompt}${pieces.map((p) => p[0]).join("")}…`;
      }
      pieces.push([shownAs(c), cw]);
      used += cw;
      i += c.length;
    }
    return `${this.#prompt}${pieces.map((p) => p[0]).join("")}`;
  }
}
