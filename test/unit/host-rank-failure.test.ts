// Which rank of a data-parallel launch failed first, from the launcher's output (trainer/host/rank-failure.ts):
// torchrun's output when rank 1 raises and rank 0 then loses its peer, in the shape torch 2.x prints it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineTail } from '../../trainer/host/child.js';
import { RANK_LINES_KEPT, RankLines } from '../../trainer/host/rank-failure.js';

const TORCHRUN_OUTPUT = `python process 4242 connected to the run
[rank1]: Traceback (most recent call last):
[rank1]:   File "train.py", line 46, in <module>
[rank1]:     main()
[rank1]:   File "train.py", line 32, in main
[rank1]:     raise RuntimeError(f"rank {rank} fails on purpose at step {step}")
[rank1]: RuntimeError: rank 1 fails on purpose at step 3
[rank0]: Traceback (most recent call last):
[rank0]:   File "train.py", line 37, in main
[rank0]:     loss.backward()
[rank0]: RuntimeError: [third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:55717. This is typically caused by a remote worker crashing.
W1201 09:24:46.296000 22077 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 22082 closing signal SIGTERM
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train.py FAILED
------------------------------------------------------------
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 22082)  (SIGTERM)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 22083)
============================================================`;

function feed(text: string): RankLines {
  const ranks = new RankLines();
  for (const line of text.split('\n')) ranks.add(line);
  return ranks;
}

test('the rank that failed first is the one whose error is not a lost peer, with its own last lines', () => {
  assert.deepEqual(feed(TORCHRUN_OUTPUT).firstFailure(), {
    rank: 1,
    error: 'RuntimeError: rank 1 fails on purpose at step 3',
    lines: ['Traceback (most recent call last):', '  File "train.py", line 46, in <module>', '    main()', '  File "train.py", line 32, in main', '    raise RuntimeError(f"rank {rank} fails on purpose at step {step}")', 'RuntimeError: rank 1 fails on purpose at step 3'],
  });
});

test('with only lost-peer errors, torchrun\'s root cause names the rank; without any rank, there is none', () => {
  const consequencesOnly = TORCHRUN_OUTPUT.split('\n').filter((l) => !l.startsWith('[rank1]')).join('\n');
  const f = feed(consequencesOnly).firstFailure();
  assert.equal(f?.rank, 1, 'the root cause block');
  assert.deepEqual([f?.error, f?.lines], [null, []], 'rank 1 printed nothing of its own');
  const noRootCause = consequencesOnly.split('Root Cause')[0];
  assert.equal(feed(noRootCause).firstFailure()?.rank, 0, 'else the first rank with an error');
  assert.equal(feed('Traceback (most recent call last):\nRuntimeError: one process').firstFailure(), null, 'not a data-parallel launch');
});

test('per-rank lines are bounded, and the tail feeds them every line across chunk boundaries', () => {
  const ranks = new RankLines();
  const tail = new LineTail(3, (l) => ranks.add(l));
  const lines = Array.from({ length: 100 }, (_, i) => `[rank2]: line ${i}`);
  const text = `${lines.join('\n')}\n[rank2]: ValueError: bad\n`;
  for (let i = 0; i < text.length; i += 7) tail.push('err', text.slice(i, i + 7));
  const f = ranks.firstFailure()!;
  assert.equal(f.rank, 2);
  assert.equal(f.lines.length, RANK_LINES_KEPT);
  assert.deepEqual(f.lines.slice(-2), ['line 99', 'ValueError: bad']);
  assert.equal(tail.get().length, 3, 'the tail keeps its own bound');
});
