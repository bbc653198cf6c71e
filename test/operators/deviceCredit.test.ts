import { describe, expect, it } from 'vitest';
import { DeviceCredit } from '../../operators/deviceCredit.js';

describe('DeviceCredit', () => {
  it('grants up to capacity, then first come first served', async () => {
    const credit = new DeviceCredit(2);
    const r1 = await credit.acquire();
    const r2 = await credit.acquire();
    const order: string[] = [];
    const w1 = credit.acquire().then((r) => (order.push('w1'), r));
    const w2 = credit.acquire().then((r) => (order.push('w2'), r));
    await Promise.resolve();
    expect(order).toEqual([]);
    expect(credit.inUse).toBe(2);
    r1();
    r1(); // idempotent
    const r3 = await w1;
    expect(order).toEqual(['w1']);
    r2();
    (await w2)();
    r3();
    expect(credit.inUse).toBe(0);
    expect(credit.peakInUse).toBe(2);
  });

  it('use() releases when the body throws', async () => {
    const credit = new DeviceCredit(1);
    await expect(credit.use(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(credit.inUse).toBe(0);
    expect(await credit.use(() => 7)).toBe(7);
  });

  it('close() rejects waiters and later acquires', async () => {
    const credit = new DeviceCredit(1);
    await credit.acquire();
    const waiting = credit.acquire();
    credit.close();
    await expect(waiting).rejects.toThrow(/closed/);
    await expect(credit.acquire()).rejects.toThrow(/closed/);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new DeviceCredit(0)).toThrow(/maxResidentBatches\) must be an integer >= 1, got 0/);
  });
});
