/**
 * The records waiting to go to one client, in seq order, with the memory bound that backpressure needs:
 * while the client is congested, spectra (per layer) and layer_stats (one key) are coalesced so that only
 * the latest of each stays queued; every other record is kept. Records are serialized once, by the
 * server, and shared by all clients' outboxes.
 */
import type { LogRecord } from '../../common/protocol.js';

export interface Outgoing {
  seq: number;
  /** Coalescing key (`spectra:<layer>` or `layer_stats`), or null for records that are never dropped. */
  key: string | null;
  json: string;
}

/** Only these bulky, superseded-by-the-next-one records may be coalesced; see ClientSession for the gap this leaves. */
export function coalescingKey(r: LogRecord): string | null {
  if (r.kind === 'spectra') return `spectra:${r.layer}`;
  if (r.kind === 'layer_stats') return 'layer_stats';
  return null;
}

export function toOutgoing(r: LogRecord): Outgoing {
  return { seq: r.seq, key: coalescingKey(r), json: JSON.stringify(r) };
}

/** A queue cell; coalescing empties it in place, which keeps seq order without shifting the queue. */
interface Slot {
  item: Outgoing | null;
}

export interface OutboxStats {
  records: number;
  /** Records that are never dropped (everything but spectra and layer_stats). */
  scalars: number;
  coalescable: number;
  bytes: number;
  /** Records dropped so far because a newer one with the same key replaced them. */
  coalescedAway: number;
  peakRecords: number;
  peakBytes: number;
}

export class Outbox {
  private queue: Slot[] = [];
  private head = 0;
  private holes = 0;
  /** While coalescing: the queued slot of the latest record per key. */
  private latest: Map<string, Slot> | null = null;
  private readonly stats: OutboxStats = { records: 0, scalars: 0, coalescable: 0, bytes: 0, coalescedAway: 0, peakRecords: 0, peakBytes: 0 };

  get coalescing(): boolean {
    return this.latest !== null;
  }

  get scalars(): number {
    return this.stats.scalars;
  }

  get empty(): boolean {
    return this.stats.records === 0;
  }

  get bytes(): number {
    return this.stats.bytes;
  }

  snapshot(): OutboxStats {
    return { ...this.stats };
  }

  /** Starts coalescing, and applies it to what is already queued so the bound holds at once. */
  startCoalescing(): void {
    if (this.latest) return;
    this.latest = new Map();
    for (let i = this.head; i < this.queue.length; i++) this.remember(this.queue[i]);
  }

  stopCoalescing(): void {
    this.latest = null;
  }

  push(item: Outgoing): void {
    const slot: Slot = { item };
    this.queue.push(slot);
    this.stats.records++;
    this.stats.bytes += item.json.length;
    if (item.key === null) this.stats.scalars++;
    else this.stats.coalescable++;
    if (this.latest) this.remember(slot);
    if (this.stats.records > this.stats.peakRecords) this.stats.peakRecords = this.stats.records;
    if (this.stats.bytes > this.stats.peakBytes) this.stats.peakBytes = this.stats.bytes;
  }

  /** Drops everything with seq ≤ `seq` (already delivered by a replay). */
  dropThrough(seq: number): void {
    while (this.head < this.queue.length) {
      const slot = this.queue[this.head];
      if (slot.item && slot.item.seq > seq) break;
      this.release(slot, false);
      this.head++;
    }
    this.compact();
  }

  /** Removes and returns up to `maxRecords` records from the front, stopping before `maxBytes` (at least one). */
  take(maxRecords: number, maxBytes: number): Outgoing[] {
    const out: Outgoing[] = [];
    let bytes = 0;
    while (this.head < this.queue.length && out.length < maxRecords) {
      const slot = this.queue[this.head];
      if (slot.item) {
        if (out.length > 0 && bytes + slot.item.json.length > maxBytes) break;
        bytes += slot.item.json.length;
        out.push(slot.item);
      }
      this.release(slot, false);
      this.head++;
    }
    this.compact();
    return out;
  }

  clear(): void {
    this.queue = [];
    this.head = 0;
    this.holes = 0;
    if (this.latest) this.latest.clear();
    this.stats.records = this.stats.scalars = this.stats.coalescable = this.stats.bytes = 0;
  }

  private remember(slot: Slot): void {
    const key = slot.item?.key;
    if (!key || !this.latest) return;
    const previous = this.latest.get(key);
    if (previous?.item) this.release(previous, true);
    this.latest.set(key, slot);
  }

  /** Empties a slot and updates the counts; `coalesced` marks a record that will never be sent. */
  private release(slot: Slot, coalesced: boolean): void {
    const item = slot.item;
    if (!item) {
      this.holes--;
      return;
    }
    slot.item = null;
    this.stats.records--;
    this.stats.bytes -= item.json.length;
    if (item.key === null) this.stats.scalars--;
    else this.stats.coalescable--;
    if (coalesced) {
      this.holes++;
      this.stats.coalescedAway++;
    }
  }

  /** Keeps the array proportional to what is queued: drop the consumed prefix and coalesced holes. */
  private compact(): void {
    const length = this.queue.length - this.head;
    if (this.head > 1024 && this.head > length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (this.holes > 1024 && this.holes > length / 2) {
      this.queue = this.queue.slice(this.head).filter((s) => s.item !== null);
      this.head = 0;
      this.holes = 0;
    }
  }
}
