/**
 * Which tensor goes to which optimizer. Muon-family updates are defined for hidden 2-D weights; the Muon
 * authors report that embeddings and the output head do worse under them, and vectors (biases, norm
 * gains) have no spectrum to shape, so those go to AdamW. Users can override by name pattern; each
 * decision carries its reason so the UI can show why a tensor ended up where it did.
 */
import { MuonscopeError } from '../../common/errors.js';

export type Route = 'matrix' | 'adamw';

export interface RoutingOverride {
  /** A regular expression (JavaScript syntax, case-insensitive) tested against the parameter name. */
  pattern: string;
  optimizer: Route;
}

export interface RoutedParameter {
  name: string;
  shape: number[];
  route: Route;
  reason: string;
}

/** Names that, by convention, are embeddings, output heads, biases or normalisation gains. */
export const ADAMW_NAME_PATTERN = /embed|wte|wpe|pos|head|lm_head|bias|gain|norm|ln_|scale/i;

function compile(override: RoutingOverride, index: number): RegExp {
  if (override.optimizer !== 'matrix' && override.optimizer !== 'adamw') {
    throw new MuonscopeError(
      'UNKNOWN_OPTIMIZER',
      `routing override ${index}: unknown optimizer ${JSON.stringify(override.optimizer)}; expected "matrix" or "adamw"`,
      { index, optimizer: override.optimizer },
    );
  }
  try {
    return new RegExp(override.pattern, 'i');
  } catch (e) {
    throw new MuonscopeError('INVALID_ARGUMENT', `routing override ${index}: invalid pattern ${JSON.stringify(override.pattern)}: ${(e as Error).message}`, {
      index,
      pattern: override.pattern,
    });
  }
}

export function routeParameters(params: { name: string; shape: number[] }[], overrides: RoutingOverride[] = []): RoutedParameter[] {
  const compiled = overrides.map(compile);
  return params.map(({ name, shape }) => {
    const is2d = shape.length === 2;
    const hit = compiled.findIndex((re) => re.test(name));
    if (hit >= 0) {
      const { pattern, optimizer } = overrides[hit];
      if (optimizer === 'matrix' && !is2d) {
        throw new MuonscopeError(
          'INVALID_ARGUMENT',
          `routing override /${pattern}/ sends "${name}" (shape [${shape.join(', ')}]) to the matrix optimizer, which takes only 2-D parameters`,
          { name, shape, pattern },
        );
      }
      return { name, shape, route: optimizer, reason: `override /${pattern}/` };
    }
    if (!is2d) return { name, shape, route: 'adamw', reason: `${shape.length}-D tensor (not a matrix)` };
    const match = ADAMW_NAME_PATTERN.exec(name);
    if (match) return { name, shape, route: 'adamw', reason: `name matches "${match[0]}" (embedding, head, bias or gain)` };
    return { name, shape, route: 'matrix', reason: 'hidden 2-D weight' };
  });
}
