/**
 * {@link MailPeerFiles}: what the client keeps of its peers' mail keys
 * (PROTOCOL.md section 9.1 "The peer's keys"): `peers/<peer>.mail`, the
 * certificates verified last, and `peers/<peer>.verified`, the fingerprint
 * the user verified (`!verify`).
 * @module
 */

import { dirname } from "node:path";
import { checkUsername, type PeerMailCerts } from "../proto/mod.ts";
import { checkKeyDirs, ensureDir } from "./_files.ts";
import type { MailDir } from "./_mail_dir.ts";
import {
  readMailFile,
  removeFile,
  syncDir,
  writeFiles,
} from "./_mail_files.ts";
import {
  checkCert,
  checkFingerprint,
  encodeFingerprint,
  encodePeerCerts,
  MAIL_FILE,
  parseFingerprint,
  parsePeerCerts,
} from "./_mail_records.ts";
import { KEY_LAYOUT as L, keyPath } from "./layout.ts";

/** One user's files about its peers' mail keys. */
export class MailPeerFiles {
  readonly #d: MailDir;

  /** @param d the mail folder (its key directory and user) */
  constructor(d: MailDir) {
    this.#d = d;
  }

  #peerFile(peer: string, kind: "mail" | "verified"): string {
    checkUsername(peer);
    return keyPath(
      this.#d.dir,
      kind === "mail"
        ? L.userPeerMail(this.#d.me, peer)
        : L.userPeerVerified(this.#d.me, peer),
    );
  }

  async peerCerts(peer: string): Promise<PeerMailCerts | undefined> {
    const path = this.#peerFile(peer, "mail");
    await checkKeyDirs(this.#d.peerDirs());
    const bytes = await readMailFile(path, MAIL_FILE.peerCerts);
    if (!bytes) return undefined;
    return parsePeerCerts(path, bytes);
  }

  async savePeerCerts(peer: string, certs: PeerMailCerts): Promise<void> {
    const path = this.#peerFile(peer, "mail");
    checkCert("identityCert", certs.identityCert);
    const spk = certs.signedPrekeyCert;
    if (spk !== undefined) checkCert("signedPrekeyCert", spk);
    for (const d of this.#d.peerDirs()) await ensureDir(d);
    await writeFiles([{ path, bytes: encodePeerCerts(certs) }]);
  }

  async forgetPeer(peer: string): Promise<void> {
    const mail = this.#peerFile(peer, "mail");
    const verified = this.#peerFile(peer, "verified");
    await removeFile(mail);
    await removeFile(verified);
    await syncDir(dirname(mail));
  }

  async verified(peer: string): Promise<string | undefined> {
    const path = this.#peerFile(peer, "verified");
    await checkKeyDirs(this.#d.peerDirs());
    const bytes = await readMailFile(path, MAIL_FILE.verified);
    if (!bytes) return undefined;
    return parseFingerprint(path, bytes);
  }

  async setVerified(peer: string, fingerprint: string): Promise<void> {
    const path = this.#peerFile(peer, "verified");
    checkFingerprint(fingerprint);
    for (const d of this.#d.peerDirs()) await ensureDir(d);
    await writeFiles([{ path, bytes: encodeFingerprint(fingerprint) }]);
  }
}
