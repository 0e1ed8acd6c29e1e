/**
 * Internal: {@link recordPair}, the one place where a handshake turns the raw
 * direction keys it derived into its record layer and wipes them. Used by
 * the login (PROTOCOL.md section 3, "the session key and the X25519 secret
 * are wiped once the keys are derived", rule 2.8) and by the peer handshake
 * (section 6). Not re-exported by `mod.ts`.
 * @module
 */

import { wipe } from "../util/mod.ts";
import type { DirectionKeys } from "../crypto/mod.ts";
import { RecordOpener, RecordSealer } from "../record/mod.ts";

/** One side's record layer: it seals one direction and opens the other. */
export interface RecordPair {
  sealer: RecordSealer;
  opener: RecordOpener;
}

/**
 * Build the sealer and the opener, then wipe the raw key bytes of both
 * directions: the record layer keeps its own keyed state (rule 2.8).
 * @param seal keys of the direction this side sends (wiped)
 * @param open keys of the direction this side receives (wiped)
 * @param windowMs the opener's freshness window (rule 3.5); its default when undefined
 * @returns the sealer and the opener
 */
export function recordPair(
  seal: DirectionKeys,
  open: DirectionKeys,
  windowMs: number | undefined,
): RecordPair {
  try {
    return {
      sealer: new RecordSealer(seal),
      opener: new RecordOpener(
        open,
        windowMs === undefined ? {} : { windowMs },
      ),
    };
  } finally {
    wipe(seal.enc, seal.iv, seal.mac, open.enc, open.iv, open.mac);
  }
}
