// The kubelet stand-in's status writes: the sequence of the reliability flake
// (a slow "not ready" write still under way when "ready" is wanted) must end
// with "ready" written, with no two writes at once.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { LatestValueWriter } from '../../src/local/latest-value-writer.js';

/** A store whose writes take the time `delays` says, recording what lands and when writes overlap. */
function slowStore(delays: (value: boolean) => number) {
  const store = { value: undefined as boolean | undefined, landed: [] as boolean[], inFlight: 0, overlapped: false };
  const write = async (value: boolean) => {
    store.inFlight++;
    store.overlapped ||= store.inFlight > 1;
    await sleep(delays(value));
    store.inFlight--;
    store.value = value;
    store.landed.push(value);
  };
  return { store, write };
}

t.test('a slow older write is never overtaken: the latest value lands last', async (t) => {
  const { store, write } = slowStore((ready) => (ready ? 5 : 150));
  const writer = new LatestValueWriter(write, () => t.fail('no write fails'));
  const first = writer.want(false); // the write at launch, slow
  await sleep(20);
  const second = writer.want(true); // the mount is up while it is under way
  await Promise.all([first, second]);
  t.equal(store.value, true, 'the API ends with Ready');
  t.same(store.landed, [false, true], 'in the order wanted');
  t.notOk(store.overlapped, 'one write at a time');
});

t.test('a value wanted again is not written again', async (t) => {
  const { store, write } = slowStore(() => 1);
  const writer = new LatestValueWriter(write, () => t.fail('no write fails'));
  await writer.want(true);
  await writer.want(true);
  await writer.want(true);
  t.same(store.landed, [true]);
});

t.test('a value that flips back while a write is under way ends as wanted', async (t) => {
  const { store, write } = slowStore(() => 30);
  const writer = new LatestValueWriter(write, () => t.fail('no write fails'));
  const a = writer.want(true);
  void writer.want(false);
  const b = writer.want(true);
  await Promise.all([a, b]);
  t.equal(store.value, true);
  t.same(store.landed, [true], 'the value in between is skipped, the one already written not repeated');
});

t.test('a failed write is written again on the next want', async (t) => {
  let fail = true;
  const landed: boolean[] = [];
  const errors: unknown[] = [];
  const writer = new LatestValueWriter(
    (v: boolean) => {
      if (fail) return Promise.reject(new Error('API busy'));
      landed.push(v);
      return Promise.resolve();
    },
    (err) => errors.push(err),
  );
  await writer.want(true);
  t.equal(errors.length, 1, 'the failure is reported');
  fail = false;
  await writer.want(true);
  t.same(landed, [true], 'written once the API answers');
});

t.test('nothing is written after close', async (t) => {
  const { store, write } = slowStore(() => 1);
  const writer = new LatestValueWriter(write, () => undefined);
  writer.close();
  await writer.want(true);
  t.same(store.landed, []);
});
