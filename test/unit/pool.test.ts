import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedPool } from '../../src/util/pool.js';

t.test('runs at most size tasks of one key at once, in arrival order, other keys apart', async (t) => {
  const pool = new KeyedPool(2);
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const task = (i: number) => async () => {
    started.push(i);
    most = Math.max(most, ++running);
    await sleep(5);
    running--;
    return i;
  };
  const other = pool.run('b', async () => running);
  const results = await Promise.all([0, 1, 2, 3, 4].map((i) => pool.run('a', task(i))));
  t.same(results, [0, 1, 2, 3, 4]);
  t.equal(most, 2, 'never more than 2 at once');
  t.same(started, [0, 1, 2, 3, 4], 'in arrival order');
  t.equal(await other, 0, 'key b did not wait for key a');
});

t.test('a failing task frees its slot', async (t) => {
  const pool = new KeyedPool(1);
  await t.rejects(
    pool.run('a', async () => Promise.reject(new Error('boom'))),
    /boom/,
  );
  t.equal(await pool.run('a', async () => 7), 7);
});

t.test('a size that is not a positive integer is refused', async (t) => {
  t.throws(() => new KeyedPool(0), /positive integer/);
});
