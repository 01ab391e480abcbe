/**
 * The tasks a run can train on. The two character tasks share one shape, so the loop and the
 * transformer workload treat them alike: int32 batches [batchSize, T+1] and a loss floor where known.
 */
export { MarkovSource, MAX_MARKOV_VOCAB, type MarkovConfig } from './markov.js';
export { TextFileTask, MAX_TEXT_VOCAB, type TextFileConfig } from './text-file.js';
export { TeacherStudentTask, type Batch, type TeacherStudentConfig } from './teacher-student.js';

/** What a character-level task offers a language model. */
export interface TokenTask {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly batchSize: number;
  /** Best achievable mean loss (nats) where the task knows it. */
  readonly lossFloor: number | null;
  /** Fixed validation sequences, [rows, T+1] row-major. */
  readonly validation: Int32Array;
  /** Training batch `index`, [batchSize, T+1] row-major, reproducible from (seed, index). */
  batch(index: number): Int32Array;
  decode(ids: ArrayLike<number>): string;
}

