/**
 * {@link Room}: one room as a member holds it (PROTOCOL.md sections 10.1 to
 * 10.3, 10.6): the creator's newest verified list and the verified leaves
 * of its epoch, the other members' chains as far as they were read (a
 * {@link RoomReader}), and our own chain of the epoch with its Ed25519
 * key. Pure state and its JSON form; the checks that let a list or a leave
 * in, and everything on the network, are `rooms.ts`'s.
 * @module
 */

import {
  type Ed25519KeyPair,
  exportEd25519Private,
  generateEd25519,
  importEd25519Private,
} from "../crypto/mod.ts";
import {
  decodeRoomLeave,
  decodeRoomList,
  membersAt,
  type RoomLeave,
  type RoomList,
  RoomReader,
  type RoomReaderState,
  type RoomVaultState,
  SenderChain,
  type SenderChainState,
} from "../proto/mod.ts";
import { ProtocolError } from "../util/mod.ts";

/** Our own chain of one epoch (section 10.2). */
export interface OwnChain {
  readonly epoch: number;
  readonly chain: SenderChain;
  readonly signing: Ed25519KeyPair;
  /** Its private half as PKCS #8, exported once, for the saved state. */
  readonly signingPkcs8: Uint8Array;
  /** The server stored our room key for every other member (`room-keyed`). */
  keyed: boolean;
}

/** A room's saved form (RoomVaultState), version 1. */
interface RoomJson {
  v: 1;
  list: string;
  leaves: string[];
  reader: RoomReaderState;
  handled: number;
  own: {
    epoch: number;
    chain: SenderChainState;
    signing: string;
    signingPublic: string;
    keyed: boolean;
  } | null;
}

/** One room, as this member holds it. */
export class Room {
  list: RoomList;
  leaves: RoomLeave[] = [];
  reader: RoomReader;
  own: OwnChain | null = null;
  /**
   * Texts typed for the room, in order, waiting for our chain's keys to be
   * stored; `done` resolves when the text was handed to the server.
   */
  readonly outbox: { text: string; done: () => void }[] = [];
  /** The epoch for which the creator (we) already signed the list without the leavers. */
  pruned = 0;
  /**
   * The newest entry of the room's log handled (its `seq`): one pushed again
   * after a reconnect is acknowledged, not read twice (its key is used up).
   */
  handled = 0;

  /** @param list the room's first verified list */
  constructor(list: RoomList) {
    this.list = list;
    this.reader = new RoomReader(list.roomId, list.name);
    this.reader.beginEpoch(list.epoch);
  }

  get name(): string {
    return this.list.name;
  }

  get epoch(): number {
    return this.list.epoch;
  }

  /** The members now: the list's, minus those who left (section 10.1). */
  get members(): string[] {
    return membersAt(this.list, this.leaves);
  }

  /**
   * Is `sender` a member at `epoch`? At the current epoch, by the list and
   * leaves; at an older one, by our holding a chain of it, which we took
   * only from a member of that epoch.
   */
  isMember(sender: string, epoch: number): boolean {
    return epoch === this.epoch
      ? this.members.includes(sender)
      : this.reader.hasChain(sender, epoch);
  }

  /**
   * A newer verified list: the leaves start over, older chains freeze.
   * @param list the list (its epoch above ours, checked by the caller)
   */
  advance(list: RoomList): void {
    this.list = list;
    this.leaves = [];
    this.reader.beginEpoch(list.epoch);
    if (this.own && this.own.epoch !== list.epoch) this.own = null;
  }

  /** A fresh chain of ours for the current epoch (section 10.2). */
  async freshChain(): Promise<OwnChain> {
    const signing = await generateEd25519(true);
    const own = {
      epoch: this.epoch,
      chain: SenderChain.fresh(this.list.roomId),
      signing,
      signingPkcs8: await exportEd25519Private(signing),
      keyed: false,
    };
    this.own = own;
    return own;
  }

  /** @returns the state to save */
  toJSON(): RoomVaultState {
    const own = this.own;
    const json: RoomJson = {
      v: 1,
      list: this.list.bytes.toBase64(),
      leaves: this.leaves.map((l) => l.bytes.toBase64()),
      reader: this.reader.toJSON(),
      handled: this.handled,
      own: own && {
        epoch: own.epoch,
        chain: own.chain.toJSON(),
        signing: own.signingPkcs8.toBase64(),
        signingPublic: own.signing.publicRaw.toBase64(),
        keyed: own.keyed,
      },
    };
    return json as unknown as RoomVaultState;
  }

  /**
   * @param state a saved state
   * @returns the room
   * @throws {ProtocolError} `room-corrupt` when it does not read back
   */
  static async fromJSON(state: RoomVaultState): Promise<Room> {
    try {
      const j = state as unknown as RoomJson;
      if (j.v !== 1) throw new Error(`version ${j.v}`);
      const room = new Room(decodeRoomList(Uint8Array.fromBase64(j.list)));
      room.leaves = j.leaves.map((l) =>
        decodeRoomLeave(Uint8Array.fromBase64(l))
      );
      room.reader = RoomReader.fromJSON(j.reader);
      room.handled = typeof j.handled === "number" ? j.handled : 0;
      if (j.own) {
        const pkcs8 = Uint8Array.fromBase64(j.own.signing);
        room.own = {
          epoch: j.own.epoch,
          chain: SenderChain.fromJSON(j.own.chain),
          signing: await importEd25519Private(
            pkcs8,
            Uint8Array.fromBase64(j.own.signingPublic),
          ),
          signingPkcs8: pkcs8,
          keyed: j.own.keyed,
        };
      }
      return room;
    } catch (e) {
      throw new ProtocolError(
        "room-corrupt",
        `A saved room does not read back: ${(e as Error).message}`,
      );
    }
  }
}
