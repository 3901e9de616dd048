// Writes a value that changes over time to somewhere slow — the kubelet
// stand-in's Ready condition of a pod, to the API — as kubelet's status
// manager does: one write at a time, always of the latest value wanted, and
// again while what was written differs from it. Writes fired as the value
// changed could land out of order (a slow older one after a newer one) and
// leave the wrong value for good.
export class LatestValueWriter<T> {
  private wanted: T | undefined;
  /** What the last write that succeeded wrote; none before the first and after a failed one. */
  private written: { value: T } | undefined;
  private writing: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly write: (value: T) => Promise<void>,
    /** A failed write; the value is written again on the next want(). */
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Wants `value` written; resolves once it is (or the write failed, or a newer value took over). */
  want(value: T): Promise<void> {
    this.wanted = value;
    this.writing ??= this.drain().finally(() => (this.writing = undefined));
    return this.writing;
  }

  /** Writes nothing more (a write under way still ends). */
  close(): void {
    this.closed = true;
  }

  private async drain(): Promise<void> {
    while (!this.closed && (this.written === undefined || this.written.value !== this.wanted)) {
      const value = this.wanted as T;
      try {
        await this.write(value);
        this.written = { value };
      } catch (err) {
        this.written = undefined;
        this.onError(err);
        return;
      }
    }
  }
}
