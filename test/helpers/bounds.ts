// Bound checks whose failure shows the numbers: `assert.ok(err < tol)` alone fails with "false".
import assert from 'node:assert/strict';

export function assertBelow(value: number, bound: number, what: string): void {
  assert.ok(value < bound, `${what}: ${value} is not below ${bound}`);
}

export function assertAtMost(value: number, bound: number, what: string): void {
  assert.ok(value <= bound, `${what}: ${value} is above ${bound}`);
}

export function assertAbove(value: number, bound: number, what: string): void {
  assert.ok(value > bound, `${what}: ${value} is not above ${bound}`);
}

export function assertAtLeast(value: number, bound: number, what: string): void {
  assert.ok(value >= bound, `${what}: ${value} is below ${bound}`);
}
