/**
 * How many terminal cells a code point takes, for the line editor (the
 * `wcwidth` of POSIX, roughly): 0 for combining marks, 2 for East Asian
 * wide and fullwidth characters and emoji (UAX #11), 1 for the rest. An
 * invisible character (Default_Ignorable_Code_Point or Cf) is shown as
 * `\u{XXXX}`, as sanitize.ts shows it, and takes that many cells.
 * @module
 */

// UAX #11 East_Asian_Width W and F, the ranges that matter in practice
// (Hangul Jamo, CJK, Hiragana/Katakana, Hangul syllables, compatibility
// ideographs, fullwidth forms, emoji and pictographs, CJK extensions).
const WIDE: ReadonlyArray<readonly [number, number]> = [
  [0x1100, 0x115f],
  [0x231a, 0x231b],
  [0x2329, 0x232a],
  [0x23e9, 0x23ec],
  [0x23f0, 0x23f0],
  [0x23f3, 0x23f3],
  [0x25fd, 0x25fe],
  [0x2614, 0x2615],
  [0x2648, 0x2653],
  [0x267f, 0x267f],
  [0x2693, 0x2693],
  [0x26a1, 0x26a1],
  [0x26aa, 0x26ab],
  [0x26bd, 0x26be],
  [0x26c4, 0x26c5],
  [0x26ce, 0x26ce],
  [0x26d4, 0x26d4],
  [0x26ea, 0x26ea],
  [0x26f2, 0x26f3],
  [0x26f5, 0x26f5],
  [0x26fa, 0x26fa],
  [0x26fd, 0x26fd],
  [0x2705, 0x2705],
  [0x270a, 0x270b],
  [0x2728, 0x2728],
  [0x274c, 0x274c],
  [0x274e, 0x274e],
  [0x2753, 0x2755],
  [0x2757, 0x2757],
  [0x2795, 0x2797],
  [0x27b0, 0x27b0],
  [0x27bf, 0x27bf],
  [0x2b1b, 0x2b1c],
  [0x2b50, 0x2b50],
  [0x2b55, 0x2b55],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xa960, 0xa97f],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe10, 0xfe19],
  [0xfe30, 0xfe6f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x16fe0, 0x16fe4],
  [0x17000, 0x18cff],
  [0x1b000, 0x1b2ff],
  [0x1f004, 0x1f004],
  [0x1f0cf, 0x1f0cf],
  [0x1f18e, 0x1f18e],
  [0x1f191, 0x1f19a],
  [0x1f200, 0x1f251],
  [0x1f300, 0x1f64f],
  [0x1f680, 0x1f6ff],
  [0x1f7e0, 0x1f7eb],
  [0x1f90c, 0x1f9ff],
  [0x1fa70, 0x1faff],
  [0x20000, 0x3fffd],
];

const COMBINING = /^[\p{Mn}\p{Me}]$/u;
const INVISIBLE = /^[\p{Default_Ignorable_Code_Point}\p{Cf}]$/u;

function isWide(cp: number): boolean {
  let lo = 0, hi = WIDE.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = WIDE[mid]!;
    if (cp < a) hi = mid - 1;
    else if (cp > b) lo = mid + 1;
    else return true;
  }
  return false;
}

/**
 * Is this code point a combining mark (it joins the character before it)?
 * @param c one code point
 * @returns true for general categories Mn and Me
 */
export function isCombining(c: string): boolean {
  return c.length > 0 && c.charCodeAt(0) >= 0x300 && COMBINING.test(c);
}

/**
 * The code point as the line editor shows it: itself, or `\u{XXXX}` for an
 * invisible one (as {@link sanitizeText} of sanitize.ts shows it).
 * @param c one code point
 * @returns what to write
 */
export function shownAs(c: string): string {
  const cp = c.codePointAt(0) ?? 0;
  if (cp >= 0xad && INVISIBLE.test(c)) {
    return `\\u{${cp.toString(16).toUpperCase().padStart(4, "0")}}`;
  }
  return c;
}

/**
 * Cells a code point takes as the line editor shows it.
 * @param c one code point
 * @returns 0, 1, 2, or the length of its `\u{XXXX}` form
 */
export function cellWidth(c: string): number {
  const cp = c.codePointAt(0) ?? 0;
  if (cp < 0x300) return cp === 0xad ? shownAs(c).length : 1;
  if (isCombining(c)) return 0;
  const shown = shownAs(c);
  if (shown !== c) return shown.length;
  return isWide(cp) ? 2 : 1;
}

/**
 * Cells a string of printable text takes (SGR sequences count as zero).
 * @param s the text, e.g. a coloured prompt
 * @returns its width in cells
 */
export function textWidth(s: string): number {
  // deno-lint-ignore no-control-regex -- SGR is what the prompt holds
  const plain = s.replace(/\x1b\[[0-9;]*m/g, "");
  let w = 0;
  for (const c of plain) w += cellWidth(c);
  return w;
}
