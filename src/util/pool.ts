// A bounded pool: at most `size` tasks of one key run at once, the rest wait in arrival order.
export class KeyedPool {
  private readonly slots = new Map<string, { running: number; waiting: (() => void)[] }>();

  constructor(private readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`pool size ${size} is not a positive integer`);
  }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let s = this.slots.get(key);
    if (!s) this.slots.set(key, (s = { running: 0, waiting: [] }));
    const slot = s;
    if (slot.running >= this.size) await new Promise<void>((resolve) => slot.waiting.push(resolve));
    else slot.running++;
    try {
      return await fn();
    } finally {
      // A waiter inherits the slot (running unchanged); the last one out forgets the key.
      const next = slot.waiting.shift();
      if (next) next();
      else if (--slot.running === 0) this.slots.delete(key);
    }
  }
}
