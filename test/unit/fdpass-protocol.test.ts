// The JFS_SUPER_COMM rules (src/fdpass/protocol.ts): what the holder offers and what it keeps of an answer.
import t from 'tap';
import { classifyReply, CLOSE, INITIAL_SETTING, offerFds } from '../../src/fdpass/protocol.js';

t.test('the holder offers the dummy first, then the held fd', async (t) => {
  t.same(offerFds(7, undefined), [7]);
  t.same(offerFds(7, 12), [7, 12]);
  t.equal(INITIAL_SETTING.toString(), 'FUSE', "juicefs's own initial setting");
});

t.test('an answer with a setting and one fd is stored', async (t) => {
  const setting = Buffer.alloc(104, 1);
  const r = classifyReply(setting, [9]);
  t.same(r, { kind: 'store', fd: 9, setting });
  if (r.kind === 'store') t.not(r.setting, setting, 'the setting is a copy, not a view of the read buffer');
});

t.test('everything else is discarded with its fds (to be closed)', async (t) => {
  t.same(classifyReply(CLOSE, [0]), { kind: 'discard', fds: [0], why: 'CLOSE' });
  t.same(classifyReply(Buffer.alloc(0), []), { kind: 'discard', fds: [], why: 'no answer' });
  t.same(classifyReply(Buffer.alloc(0), [4]), { kind: 'discard', fds: [4], why: 'fds without a setting' });
  t.same(classifyReply(Buffer.alloc(104), [4, 5]), { kind: 'discard', fds: [4, 5], why: 'setting with 2 fds' });
  t.same(classifyReply(Buffer.alloc(104), []), { kind: 'discard', fds: [], why: 'setting with 0 fds' });
});
