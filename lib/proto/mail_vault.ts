/**
 * What a mailbox client keeps of its own and of its peers (PROTOCOL.md
 * section 9.1 "At rest", 9.5, 9.6), as an interface: the keystore keeps it
 * in the key directory (`users/<me>/mail/`, `keystore/mail_vault.ts`), the
 * client in memory when it has none (`client/mail_memory.ts`). The client's
 * mailbox logic reaches its private keys only through this seam, so no
 * private key is written anywhere else.
 * @module
 */

/**
 * An X25519 key pair of the mailbox: the same shape as a handshake's
 * `Ephemeral`, so `sharedSecret` of `crypto/x25519.ts` takes it. A vault
 * returns private keys non-extractable.
 */
export interface MailKeyPair {
  readonly privateKey: CryptoKey;
  /** The 32-byte public key (RFC 7748 encoding). */
  readonly publicRaw: Uint8Array<ArrayBuffer>;
}

/** The identity key `ik` and its certificate `IK_CERT` (section 9.1). */
export interface MailIdentity {
  readonly pair: MailKeyPair;
  /** `IK_CERT` bytes, signed by the user's RSA key. */
  readonly cert: Uint8Array;
  /** Its `created`, ms since the epoch (server's clock). */
  readonly created: number;
}

/** A signed prekey `spk` and its `SPK_CERT` (section 9.1). */
export interface SignedPrekey {
  readonly id: number;
  readonly pair: MailKeyPair;
  /** `SPK_CERT` bytes. */
  readonly cert: Uint8Array;
  readonly created: number;
  readonly expires: number;
}

/** A one-time prekey `opk` (section 9.1): deleted once the message that used it is shown. */
export interface OneTimePrekey {
  readonly id: number;
  readonly pair: MailKeyPair;
}

/** A peer's last verified mailbox certificates (`peers/<peer>.mail`, section 9.1). */
export interface PeerMailCerts {
  /** `IK_CERT` bytes. */
  readonly identityCert: Uint8Array;
  /** `SPK_CERT` bytes, when a bundle was verified (a `keys` answer alone may have set only the identity). */
  readonly signedPrekeyCert?: Uint8Array;
}

/** A message sent and not yet acknowledged as delivered (section 9.6 `pending`). */
export interface PendingReceipt {
  /** 16 bytes. */
  readonly msgId: Uint8Array;
  /** The receipt key `rk`, 32 bytes. */
  readonly rk: Uint8Array;
  /** When it was sent (ms, server's clock). */
  readonly time: number;
  /** The recipient (kept in memory only by a vault that can; not part of the 56-byte file record). */
  readonly to?: string;
}

/**
 * A user's mailbox state. Every write is durable when its promise resolves
 * (a file vault writes through a temporary file and a rename, or appends and
 * syncs). Private keys are stored only here.
 */
export interface MailVault {
  /** @returns the identity key, or undefined before the first publish */
  identity(): Promise<MailIdentity | undefined>;
  /**
   * Keep the identity key (made once; replaced only when lost).
   * @param id the key pair (its private key extractable, so a file vault can write it) and its certificate
   */
  saveIdentity(id: MailIdentity): Promise<void>;
  /** @returns the signed prekeys held, oldest first (the last is the newest) */
  signedPrekeys(): Promise<SignedPrekey[]>;
  /** Keep a new signed prekey (private key extractable). */
  saveSignedPrekey(spk: SignedPrekey): Promise<void>;
  /** Forget a retired signed prekey (its file removed). */
  dropSignedPrekey(id: number): Promise<void>;
  /** @returns the one-time prekey `id`, or undefined when not held (used, or never made) */
  oneTimePrekey(id: number): Promise<OneTimePrekey | undefined>;
  /** Keep new one-time prekeys (private keys extractable). */
  saveOneTimePrekeys(opks: OneTimePrekey[]): Promise<void>;
  /** Delete a one-time prekey for good (its file removed). */
  dropOneTimePrekey(id: number): Promise<void>;
  /**
   * Take `count` fresh ids of a kind: counters from 1, never reused, kept
   * across restarts (`state`).
   * @returns the first of `count` consecutive ids
   */
  allocateIds(kind: "spk" | "opk", count: number): Promise<number>;

  /** Whether a `msg_id` was shown (section 9.5); read from what `open` loaded. */
  hasSeen(msgId: Uint8Array): boolean;
  /**
   * Record a shown message's id: {@link hasSeen} knows it at once; it is
   * written and durable once {@link sync} resolves (one write and one sync
   * per `mail-ack`, not per message).
   */
  addSeen(msgId: Uint8Array, time: number): Promise<void>;
  /**
   * Make durable every id added by {@link addSeen} and every entry dropped
   * by {@link dropPending} since the last call: awaited before each
   * `mail-ack` is sent (section 9.4, "Order across a restart"), so the
   * records it acknowledges are never handled again, and a receipt handled
   * is never awaited again.
   */
  sync(): Promise<void>;

  /** Keep the receipt key of a message sent (section 9.6). */
  addPending(p: PendingReceipt): Promise<void>;
  /** @returns the pending entry of `msgId` (it stays until {@link dropPending}) */
  pending(msgId: Uint8Array): Promise<PendingReceipt | undefined>;
  /** Forget a pending entry (its receipt came); durable once {@link sync} resolves. */
  dropPending(msgId: Uint8Array): Promise<void>;
  /**
   * Forget the entries sent before `before` (31 days: never delivered).
   * @returns what was dropped, so the user can be told
   */
  expirePending(before: number): Promise<PendingReceipt[]>;

  /** @returns the peer's last verified certificates */
  peerCerts(peer: string): Promise<PeerMailCerts | undefined>;
  /** Keep a peer's newly verified certificates. */
  savePeerCerts(peer: string, certs: PeerMailCerts): Promise<void>;
  /** Forget a peer's certificates and verified mark (`!trust`). */
  forgetPeer(peer: string): Promise<void>;
  /** @returns the RSA fingerprint (`SHA256:...`) the user verified for `peer` (`!verify`), if any */
  verified(peer: string): Promise<string | undefined>;
  /** Mark `peer`'s fingerprint as verified by the user (`!verify`). */
  setVerified(peer: string, fingerprint: string): Promise<void>;
}
